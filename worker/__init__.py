"""The ai-models worker: fetches a source, inspects it, packs it as a ModelPack artifact."""
