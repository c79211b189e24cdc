"""The ai-models worker: fetches a model source, inspects it and packs it as a ModelPack artifact."""
