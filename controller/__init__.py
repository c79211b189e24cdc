"""The ai-models controller: reconciles Model, ClusterModel and ModelCatalogSource."""
