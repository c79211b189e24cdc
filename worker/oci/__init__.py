"""Packing a model as a CNCF ModelPack OCI artifact, moving it into an OCI registry or an OCI
image layout directory, and pulling it back into a directory.

    modelpack        pure builders: the ModelPack config and the OCI manifest (no I/O)
    content          digests, re-chunking, the DigestMismatch fact
    reference        ``host[:port]/repository[:tag|@digest]`` parsing
    auth             docker config credentials, Basic and Bearer-token challenges
    registry         the only HTTP client of OCI registries: retries, auth, typed errors
    upload           chunked, resumable blob uploads over the registry client
    layout           an OCI image layout directory (atomic blobs, index.json)
    target           where an artifact goes: a registry repository or a layout directory
    publish          the transfer engine: plan + source -> blobs, config, manifest
    manifest_reader  untrusted manifests of pulled artifacts: bounded, paths checked, ModelPack only
    materialize      artifact (by digest) -> a directory of verified files
    materialize_writer  one digest: fetched once, verified, placed at every path (raw or tar)
    materialize_state   the append-only journal of what is complete
    tar_layer        tar / tar+gzip / tar+zstd layers read as untrusted input, every length bounded
    safe_fs          the directory written through descriptors only: no link is ever followed

See docs/oci.md for the artifact format and the reasons for our own registry client.
"""
