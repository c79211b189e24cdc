"""The upload gateway (``ai-models-upload-gateway``): the HTTP API of upload sessions.

Users stream a file into a session; the gateway checks the session's token against the record
Secret the controller wrote, and passes the bytes on, one chunk at a time, into the registry's
chunked upload of the session's staging repository. Its replicas share no memory: an upload's
state is the registry's upload session and the record (``api.upload.SessionRecord``).

    errors      the HTTP refusals (``Refusal``: an ``api.upload`` error code and a message)
    wire        pure parsing of what a client sends: token, offsets, Content-Range, filename
    ratelimit   wrong tokens per session per minute (a fake clock in tests)
    records     the record Secrets: cached reads, compare-and-swap updates
    auth        the bearer token → the session's record, in constant time
    progress    the latest registry location and offset of each upload, written back lazily
    body        a request body as chunks (Content-Length or chunked), one chunk in memory
    uploads     the operations: PUT whole, start, status, append, commit
    server      the HTTP server (routes, answers, one log line per request)
    cli         the entry point and its settings

docs/upload.md describes the API; docs/security.md why the gateway may read the records.
"""
