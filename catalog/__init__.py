"""The catalog server (``ai-models-catalog-server``): this cluster's published ClusterModels in
catalog protocol v1 (docs/catalog-protocol.md) and the grant holders' registry read API."""
