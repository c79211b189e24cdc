"""ai-models delivery: the node-local, authorized, read-only OCI endpoint pods pull from."""
