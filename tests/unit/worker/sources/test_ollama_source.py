"""Ollama manifests to plans, without a registry (the client's answers: test_ollama_client)."""

from __future__ import annotations

import hashlib
import json

import pytest

from worker.errors import (
    AmbiguousFormat,
    NoSupportedWeights,
    RevisionNotFound,
    SourceNotFound,
    SourceUnavailable,
    WorkerError,
)
from worker.sources.ollama import OllamaSource
from worker.sources.ollama_client import RegistryManifest
from worker.sources.spec import OllamaSpec

OLLAMA = "application/vnd.ollama.image"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """The three calls OllamaSource makes, answered from memory."""

    def __init__(self, layers: list[tuple[str, bytes]], config: dict[str, object]) -> None:
        self.blobs = {_digest(data): data for _, data in layers}
        raw_config = json.dumps(config).encode()
        self.blobs[_digest(raw_config)] = raw_config
        document = {
            "schemaVersion": 2,
            "config": {"mediaType": "x", "digest": _digest(raw_config), "size": len(raw_config)},
            "layers": [
                {"mediaType": media_type, "digest": _digest(data), "size": len(data)}
                for media_type, data in layers
            ],
        }
        raw = json.dumps(document).encode()
        self.manifest_value = RegistryManifest(raw=raw, digest=_digest(raw), document=document)
        self.missing: SourceNotFound | None = None
        self.tag_list: tuple[str, ...] | None = None

    def manifest(self, repository: str, reference: str) -> RegistryManifest:
        if self.missing:
            raise self.missing
        return self.manifest_value

    def tags(self, repository: str) -> tuple[str, ...] | None:
        return self.tag_list

    def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        return self.blobs[digest]


def _source(registry: FakeRegistry, tag: str | None = "1b") -> OllamaSource:
    spec = OllamaSpec("https://ollama.com/library/m", "m", tag or "latest", tag_given=bool(tag))
    return OllamaSource(spec, registry)  # type: ignore[arg-type]


def test_layers_map_to_files() -> None:
    layers = [
        (f"{OLLAMA}.model", b"GGUF-model"),
        (f"{OLLAMA}.projector", b"GGUF-projector"),
        (f"{OLLAMA}.template", b"{{ .Prompt }}"),
        (f"{OLLAMA}.license", b"license one"),
        (f"{OLLAMA}.license", b"license two"),
        (f"{OLLAMA}.params", b"{}"),
        (f"{OLLAMA}.tensor", b"unknown"),
    ]
    config = {"model_format": "gguf", "model_family": "gemma3", "capabilities": ["vision", 3]}
    registry = FakeRegistry(layers, config)
    plan = _source(registry).plan()
    assert [(f.path, f.role, f.size) for f in plan.files] == [
        ("LICENSE", "doc", 11),
        ("LICENSE-2", "doc", 11),
        ("mmproj.gguf", "weight", 14),
        ("model.gguf", "weight", 10),
        ("params.json", "config", 2),
        ("template", "config", 13),
    ]
    assert plan.file("model.gguf").sha256 == _digest(b"GGUF-model")[7:]  # type: ignore[union-attr]
    assert plan.revision == registry.manifest_value.digest
    assert plan.provider_features == ("vision",)
    assert plan.notes == (
        f"dropped layers of unsupported types: {OLLAMA}.tensor",
        "Ollama image config: family gemma3",
    )


@pytest.mark.parametrize(
    ("layers", "config", "error", "text"),
    [
        ([(f"{OLLAMA}.template", b"t")], {}, NoSupportedWeights, f"found {OLLAMA}.template"),
        ([(f"{OLLAMA}.model", b"a"), (f"{OLLAMA}.model", b"b")], {}, AmbiguousFormat, "2 model"),
        ([(f"{OLLAMA}.model", b"a")], {"model_format": "safetensors"}, NoSupportedWeights,
         "stored as 'safetensors'"),
    ],
)  # fmt: skip
def test_unsupported_manifests(
    layers: list[tuple[str, bytes]],
    config: dict[str, object],
    error: type[WorkerError],
    text: str,
) -> None:
    with pytest.raises(error, match=text):
        _source(FakeRegistry(layers, config)).plan()


def test_a_malformed_descriptor_is_unavailable() -> None:
    registry = FakeRegistry([(f"{OLLAMA}.model", b"a")], {})
    registry.manifest_value.document["layers"] = [{"mediaType": "x", "digest": "md5:1", "size": 1}]
    with pytest.raises(SourceUnavailable, match="malformed descriptor"):
        _source(registry).plan()


def test_a_missing_manifest_names_the_existing_tags() -> None:
    registry = FakeRegistry([(f"{OLLAMA}.model", b"a")], {})
    registry.missing = SourceNotFound("m:1b: not found")
    registry.tag_list = ("latest", "7b")
    with pytest.raises(RevisionNotFound, match="no tag '1b'; its tags: 7b, latest"):
        _source(registry).plan()
    with pytest.raises(SourceNotFound):
        _source(registry, tag=None).plan()  # the default tag: the model itself may be missing
    registry.tag_list = None
    with pytest.raises(SourceNotFound):
        _source(registry).plan()
