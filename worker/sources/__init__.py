"""The worker's model sources: one ``open_source`` call from a user's source string to a ``Source``.

``open_source`` parses the string (``spec``), picks the provider (Hugging Face, the Ollama
registry, a local path) and hands it its client built from ``SourceSettings``. Providers resolve
their plan lazily: nothing touches the network until ``plan()`` is called.

    spec.py            source string → HuggingFaceSpec | OllamaSpec | LocalSpec (pure)
    selection.py       which listed files make the model (pure)
    settings.py        endpoints, token, CA, timeouts (from the environment)
    hub_client.py      Hugging Face Hub facade (the only importer of huggingface_hub)
    huggingface.py     HuggingFaceSource
    ollama_client.py   Ollama/distribution registry facade
    ollama.py          OllamaSource
    local.py           LocalSource
    ranged.py          ByteSource over ranged HTTP reads
"""

from __future__ import annotations

from worker.plan import Source
from worker.sources.hub_client import HubClient
from worker.sources.huggingface import HuggingFaceSource
from worker.sources.local import LocalSource
from worker.sources.ollama import OllamaSource
from worker.sources.ollama_client import OllamaRegistryClient
from worker.sources.settings import SourceSettings
from worker.sources.spec import HuggingFaceSpec, LocalSpec, OllamaSpec, SourceSpec, parse_source

__all__ = [
    "HuggingFaceSource",
    "HuggingFaceSpec",
    "LocalSource",
    "LocalSpec",
    "OllamaSource",
    "OllamaSpec",
    "SourceSettings",
    "SourceSpec",
    "open_source",
    "parse_source",
]


def open_source(spec: str, settings: SourceSettings) -> Source:
    """The ``Source`` for a user's source string; ``InvalidSource`` when it is malformed."""
    parsed = parse_source(spec)
    if isinstance(parsed, HuggingFaceSpec):
        return HuggingFaceSource(parsed, HubClient(settings))
    if isinstance(parsed, OllamaSpec):
        return OllamaSource(parsed, OllamaRegistryClient(settings))
    return LocalSource(parsed)
