"""An ``ollama.com/library`` model as a ``Source``: one manifest, its layers as files.

The manifest (pinned by its digest, which becomes ``resolvedRevision``) lists typed layers; each
layer we keep becomes one file of the model, under a fixed name:

    application/vnd.ollama.image.model      model.gguf     weight  the GGUF
    application/vnd.ollama.image.projector  mmproj.gguf    weight  vision projector (GGUF)
    application/vnd.ollama.image.adapter    adapter.gguf   weight  LoRA adapter (GGUF)
    application/vnd.ollama.image.params     params.json    config  default run parameters
    application/vnd.ollama.image.template   template       config  Go chat template
    application/vnd.ollama.image.system     system         config  default system prompt
    application/vnd.ollama.image.messages   messages.json  config  seed conversation
    application/vnd.ollama.image.license    LICENSE        doc

A second layer of the same type gets ``-2``, ``-3``… before the extension. Other layer types are
dropped with a note. Layer digests are known in advance, so every file has its sha256. The
image config blob (``model_format``, ``model_family``, ``file_type``, ``capabilities``) is read
with a size cap; its capabilities become the provider features.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from oci.digest import is_digest
from worker.errors import (
    AmbiguousFormat,
    NoSupportedWeights,
    RevisionNotFound,
    SourceNotFound,
    SourceUnavailable,
)
from worker.inspect.reader import ByteSource
from worker.plan import FileRole, PlannedFile, SourcePlan
from worker.sources.ollama_client import OllamaRegistryClient, RegistryManifest
from worker.sources.ranged import RangedByteSource
from worker.sources.spec import OllamaSpec

MAX_CONFIG_BYTES = 1 << 20
MAX_LAYERS = 1000
MAX_LAYER_SIZE = 1 << 50
MAX_CAPABILITIES = 64
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"

LAYER_FILES: Mapping[str, tuple[str, FileRole]] = {
    MODEL_MEDIA_TYPE: ("model.gguf", "weight"),
    "application/vnd.ollama.image.projector": ("mmproj.gguf", "weight"),
    "application/vnd.ollama.image.adapter": ("adapter.gguf", "weight"),
    "application/vnd.ollama.image.params": ("params.json", "config"),
    "application/vnd.ollama.image.template": ("template", "config"),
    "application/vnd.ollama.image.system": ("system", "config"),
    "application/vnd.ollama.image.messages": ("messages.json", "config"),
    "application/vnd.ollama.image.license": ("LICENSE", "doc"),
}
"""Layer media type → (file path inside the model, role)."""


@dataclass(frozen=True)
class _Layer:
    media_type: str
    digest: str
    size: int


class OllamaSource:
    def __init__(self, spec: OllamaSpec, client: OllamaRegistryClient) -> None:
        self._spec = spec
        self._client = client
        self._plan: SourcePlan | None = None
        self._digests: dict[str, str] = {}

    def plan(self) -> SourcePlan:
        if self._plan is None:
            self._plan = self._resolve()
        return self._plan

    def byte_source(self, path: str) -> ByteSource:
        planned, digest = self._layer(path)
        repository = self._spec.repository

        def fetch(offset: int, length: int) -> bytes:
            return self._client.read_range(repository, digest, offset, length)

        return RangedByteSource(path, planned.size, fetch)

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        planned, digest = self._layer(path)
        if offset >= planned.size:
            return iter(())
        return self._client.stream_blob(self._spec.repository, digest, offset, chunk_size)

    def _resolve(self) -> SourcePlan:
        spec = self._spec
        subject = f"{spec.name}:{spec.tag}"
        manifest = self._manifest(subject)
        config_digest, layers = _parse_manifest(manifest, subject)
        config = self._config(config_digest, subject)
        files, notes = _files(layers, subject)
        self._digests = {f.path: f"sha256:{f.sha256}" for f in files}
        return SourcePlan(
            url=spec.url,
            canonical_url=spec.canonical_url,
            source_type="Ollama",
            revision=manifest.digest,
            name=subject,
            format="GGUF",
            files=files,
            notes=(*notes, *_config_notes(config)),
            provider_features=_capabilities(config),
        )

    def _manifest(self, subject: str) -> RegistryManifest:
        spec = self._spec
        try:
            return self._client.manifest(spec.repository, spec.tag)
        except SourceNotFound as exc:
            # The registry does not say whether the model or the tag is missing; its tag list does.
            tags = self._client.tags(spec.repository) if spec.tag_given else None
            if not tags:
                raise
            shown = ", ".join(sorted(tags)[:20])
            raise RevisionNotFound(
                f"{subject}: the model has no tag {spec.tag!r}; its tags: {shown}"
            ) from exc

    def _config(self, digest: str | None, subject: str) -> dict[str, object]:
        if digest is None:
            return {}
        raw = self._client.read_blob(self._spec.repository, digest, MAX_CONFIG_BYTES)
        try:
            config = json.loads(raw)
        except ValueError as exc:
            raise SourceUnavailable(f"{subject}: the image config is not JSON") from exc
        if not isinstance(config, dict):
            raise SourceUnavailable(f"{subject}: the image config is not a JSON object")
        model_format = config.get("model_format")
        if isinstance(model_format, str) and model_format.lower() not in ("", "gguf"):
            raise NoSupportedWeights(
                f"{subject}: the model is stored as {model_format!r}; only GGUF is supported"
            )
        return config

    def _layer(self, path: str) -> tuple[PlannedFile, str]:
        planned = self.plan().file(path)
        if planned is None:
            raise KeyError(f"{path} is not a file of the plan for {self._spec.url}")
        return planned, self._digests[path]


def _parse_manifest(manifest: RegistryManifest, subject: str) -> tuple[str | None, list[_Layer]]:
    document = manifest.document
    if document.get("schemaVersion") != 2:
        raise SourceUnavailable(f"{subject}: not a schema 2 image manifest")
    raw_layers = document.get("layers")
    if not isinstance(raw_layers, list) or len(raw_layers) > MAX_LAYERS:
        raise SourceUnavailable(f"{subject}: the manifest must list at most {MAX_LAYERS} layers")
    layers = [_parse_layer(entry, subject) for entry in raw_layers]
    config = document.get("config")
    config_digest = _parse_layer(config, subject).digest if config is not None else None
    return config_digest, layers


def _parse_layer(entry: object, subject: str) -> _Layer:
    if isinstance(entry, dict):
        media_type, digest, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
        if (
            isinstance(media_type, str)
            and isinstance(digest, str)
            and is_digest(digest)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and 0 <= size <= MAX_LAYER_SIZE
        ):
            return _Layer(media_type, digest, size)
    raise SourceUnavailable(f"{subject}: malformed descriptor in the manifest")


def _files(layers: list[_Layer], subject: str) -> tuple[tuple[PlannedFile, ...], list[str]]:
    models = [layer for layer in layers if layer.media_type == MODEL_MEDIA_TYPE]
    if not models:
        found = ", ".join(sorted({layer.media_type for layer in layers})) or "no layers"
        raise NoSupportedWeights(f"{subject}: no GGUF model layer in the manifest; found {found}")
    if len(models) > 1:
        raise AmbiguousFormat(f"{subject}: the manifest has {len(models)} model layers")
    files: list[PlannedFile] = []
    dropped: list[str] = []
    counts: dict[str, int] = {}
    for layer in layers:
        known = LAYER_FILES.get(layer.media_type)
        if known is None:
            dropped.append(layer.media_type)
            continue
        path, role = known
        counts[path] = counts.get(path, 0) + 1
        files.append(
            PlannedFile(
                path=_numbered(path, counts[path]),
                size=layer.size,
                role=role,
                sha256=layer.digest.removeprefix("sha256:"),
            )
        )
    notes = []
    if dropped:
        notes.append(f"dropped layers of unsupported types: {', '.join(sorted(set(dropped)))}")
    return tuple(sorted(files, key=lambda f: f.path)), notes


def _numbered(path: str, count: int) -> str:
    if count == 1:
        return path
    stem, dot, extension = path.partition(".")
    return f"{stem}-{count}{dot}{extension}"


def _capabilities(config: Mapping[str, object]) -> tuple[str, ...]:
    raw = config.get("capabilities")
    if not isinstance(raw, list):
        return ()
    names = [c for c in raw[:MAX_CAPABILITIES] if isinstance(c, str) and 0 < len(c) <= 128]
    return tuple(dict.fromkeys(names))


def _config_notes(config: Mapping[str, object]) -> list[str]:
    facts = [
        f"{label} {config[key]}"
        for key, label in (
            ("model_family", "family"),
            ("model_type", "size"),
            ("file_type", "type"),
        )
        if isinstance(config.get(key), str) and config[key]
    ]
    return [f"Ollama image config: {', '.join(facts)}"] if facts else []
