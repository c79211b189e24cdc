"""The worker's model sources: one ``open_source`` call from a user's source string to a ``Source``.

``open_source`` parses the string (``spec``), picks the provider (Hugging Face, the Ollama
registry, a local path, an upload) and hands it its client built from ``SourceSettings`` (an
upload: ``UploadSettings``, the registry settings of publishing and the workspace). Providers
resolve their plan lazily: nothing touches the network until ``plan()`` is called.

    spec.py            source string → HuggingFaceSpec | OllamaSpec | LocalSpec | UploadSpec
    selection.py       which listed files make the model (pure)
    settings.py        endpoints, token, CA, timeouts (from the environment)
    hub_client.py      Hugging Face Hub facade (its HTTP API over httpx2)
    huggingface.py     HuggingFaceSource
    ollama_client.py   Ollama/distribution registry facade
    ollama.py          OllamaSource
    local.py           LocalSource
    upload.py          UploadSource (a committed upload: one file, or an archive unpacked)
    ranged.py          ByteSource over ranged HTTP reads
"""

from __future__ import annotations

from worker.errors import InvalidSource
from worker.plan import Source
from worker.sources.hub_client import HubClient
from worker.sources.huggingface import HuggingFaceSource
from worker.sources.local import LocalSource
from worker.sources.ollama import OllamaSource
from worker.sources.ollama_client import OllamaRegistryClient
from worker.sources.settings import SourceSettings
from worker.sources.spec import (
    CatalogSpec,
    HuggingFaceSpec,
    LocalSpec,
    OllamaSpec,
    SourceSpec,
    UploadSpec,
    parse_source,
)
from worker.sources.upload import UploadSettings, UploadSource

__all__ = [
    "HuggingFaceSource",
    "HuggingFaceSpec",
    "LocalSource",
    "LocalSpec",
    "OllamaSource",
    "OllamaSpec",
    "SourceSettings",
    "SourceSpec",
    "UploadSettings",
    "UploadSource",
    "UploadSpec",
    "open_source",
    "parse_source",
]


def open_source(
    spec: str, settings: SourceSettings, upload: UploadSettings | None = None
) -> Source:
    """The ``Source`` for a user's source string; ``InvalidSource`` when it is malformed.
    ``upload`` (default: from the environment, anonymous registry access) serves uploads."""
    parsed = parse_source(spec)
    if isinstance(parsed, CatalogSpec):
        raise InvalidSource(f"{spec}: a catalog import is copied by digest by prepare, not read")
    if isinstance(parsed, UploadSpec):
        return UploadSource(parsed, upload or UploadSettings.from_env())
    if isinstance(parsed, HuggingFaceSpec):
        return HuggingFaceSource(parsed, HubClient(settings))
    if isinstance(parsed, OllamaSpec):
        return OllamaSource(parsed, OllamaRegistryClient(settings))
    return LocalSource(parsed)
