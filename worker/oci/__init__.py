"""Packing a model as a CNCF ModelPack OCI artifact, moving it into an OCI registry or an OCI
image layout directory, and pulling it back into a directory.

    modelpack        pure builders: the ModelPack config and the OCI manifest (no I/O)
    content          re-chunking, resumable chunk openers, the DigestMismatch fact
    registry_errors  the shared registry client's errors (``oci``) as the worker's reasons
    upload           resumable blob uploads (streamed or chunked) over the registry client
    layout           an OCI image layout directory (atomic blobs, index.json)
    target           where an artifact goes: a registry repository or a layout directory
    publish          the transfer engine: plan + source -> blobs, config, manifest
    manifest_reader  untrusted manifests of pulled artifacts: bounded, paths checked, ModelPack only
    materialize      artifact (by digest) -> a directory of verified files
    materialize_writer  one digest: fetched once, verified, placed at every path (raw or tar)
    materialize_state   the append-only journal of what is complete
    tar_layer        tar / tar+gzip / tar+zstd layers read as untrusted input, every length bounded
    safe_fs          the directory written through descriptors only: no link is ever followed

The registry client itself (references, credentials, the HTTP client) is the shared top-level
package ``oci``. See docs/oci.md for the artifact format and the reasons for our own client.
"""
