"""The one client of OCI registries (distribution spec v2), shared by the worker, the controller
and the delivery endpoint; it depends on none of them.

    errors      the typed errors (each component maps them to its own reasons)
    digest      ``sha256:<64 hex>`` content addresses
    reference   ``[http(s)://]host[:port]/repository[:tag][@digest]`` parsing
    auth        docker config credentials, a bearer token file, Basic and Bearer challenges
    responses   a registry's answers: the status table, bounded bodies, Retry-After, ranges
    manifest    fetched manifests and their bounded JSON parse (4 MiB, nesting 32)
    settings    tries and backoff, timeouts, chunk size, a static bearer token file
    registry    the client: retries, auth, manifests, blobs (ranged reads, chunked uploads,
                cross-repository mounts), tags

See docs/oci.md for why this is our own client and who uses it.
"""
