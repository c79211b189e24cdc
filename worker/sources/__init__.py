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

A provider's module is imported when its kind of source is opened (or one of its names below
is first read), never by the package itself: a local ``prepare`` does not load the Hub's HTTP
client (httpx2) nor the upload's archive readers (tar, zip, zstd), which cost the start of
every run about 0.1 s (``docs/performance.md``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from worker.errors import InvalidSource
from worker.sources.spec import (
    CatalogSpec,
    HuggingFaceSpec,
    LocalSpec,
    OllamaSpec,
    SourceSpec,
    UploadSpec,
    parse_source,
)

if TYPE_CHECKING:
    from worker.plan import Source
    from worker.sources.huggingface import HuggingFaceSource
    from worker.sources.local import LocalSource
    from worker.sources.ollama import OllamaSource
    from worker.sources.settings import SourceSettings
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

_LAZY = {
    "HuggingFaceSource": "worker.sources.huggingface",
    "LocalSource": "worker.sources.local",
    "OllamaSource": "worker.sources.ollama",
    "SourceSettings": "worker.sources.settings",
    "UploadSettings": "worker.sources.upload",
    "UploadSource": "worker.sources.upload",
}
"""Name → the module defining it, imported on first use (PEP 562)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def open_source(
    spec: str, settings: SourceSettings, upload: UploadSettings | None = None
) -> Source:
    """The ``Source`` for a user's source string; ``InvalidSource`` when it is malformed.
    ``upload`` (default: from the environment, anonymous registry access) serves uploads.
    Only the module of the source's own kind is imported."""
    parsed = parse_source(spec)
    if isinstance(parsed, CatalogSpec):
        raise InvalidSource(f"{spec}: a catalog import is copied by digest by prepare, not read")
    if isinstance(parsed, UploadSpec):
        from worker.sources.upload import UploadSettings, UploadSource

        return UploadSource(parsed, upload or UploadSettings.from_env())
    if isinstance(parsed, HuggingFaceSpec):
        from worker.sources.hub_client import HubClient
        from worker.sources.huggingface import HuggingFaceSource

        return HuggingFaceSource(parsed, HubClient(settings))
    if isinstance(parsed, OllamaSpec):
        from worker.sources.ollama import OllamaSource
        from worker.sources.ollama_client import OllamaRegistryClient

        return OllamaSource(parsed, OllamaRegistryClient(settings))
    from worker.sources.local import LocalSource

    return LocalSource(parsed)
