"""Ollama sources against the real distribution registry holding a pushed SmolLM2 model, and
against a token-protected mirror (Bearer challenge, docker config credentials)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest

from tests.ground.models import RealModels
from tests.ground.ollama import PushedModel
from tests.integration.sources.conftest import OllamaMirror
from worker.errors import (
    RevisionNotFound,
    SourceNotFound,
    SourceUnauthorized,
    SourceUnavailable,
    WorkerError,
)
from worker.inspect.reader import ByteSource
from worker.inspect.resolve import inspect_source
from worker.plan import Source, SourcePlan
from worker.sources import open_source
from worker.sources.ollama import OllamaSource
from worker.sources.ollama_client import OllamaRegistryClient
from worker.sources.ranged import RangedByteSource
from worker.sources.settings import SourceSettings
from worker.sources.spec import OllamaSpec

pytestmark = pytest.mark.integration

URL = "https://ollama.com/library/smollm2:135m"


class CountingSource:
    """Wraps a source to total the bytes its byte sources fetched."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.opened: list[RangedByteSource] = []

    def plan(self) -> SourcePlan:
        return self.inner.plan()

    def byte_source(self, path: str) -> ByteSource:
        source = self.inner.byte_source(path)
        assert isinstance(source, RangedByteSource)
        self.opened.append(source)
        return source

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        return self.inner.stream(path, offset, chunk_size)


def test_smollm2_resolves_exactly(
    ollama_model: PushedModel, ollama_settings: SourceSettings, real_models: RealModels
) -> None:
    inspection = inspect_source(open_source(URL, ollama_settings))
    reader = gguf.GGUFReader(str(real_models.smollm2_gguf))
    assert inspection.resolved.to_wire() == {
        "architecture": "llama",
        "family": "llama",
        "format": "GGUF",
        "parameterCount": sum(int(t.n_elements) for t in reader.tensors),
        "quantization": "Q4_1",
        "contextWindowTokens": 8192,
        "supportedEndpointTypes": ["Chat", "TextGeneration"],
        "supportedFeatures": ["ToolCalling"],
        "sourceCapabilities": {"provider": "Ollama"},
    }
    assert inspection.source_status.to_wire() == {
        "resolvedRevision": ollama_model.manifest_digest,
        "resolvedType": "Ollama",
    }


def test_layers_become_named_files_with_their_digests(
    ollama_model: PushedModel, ollama_settings: SourceSettings
) -> None:
    plan = open_source(URL, ollama_settings).plan()
    digests = {kind: ollama_model.layer(kind).digest.removeprefix("sha256:")
               for kind in ("model", "template", "params", "system", "license")}  # fmt: skip
    assert [(f.path, f.role, f.sha256) for f in plan.files] == [
        ("LICENSE", "doc", digests["license"]),
        ("model.gguf", "weight", digests["model"]),
        ("params.json", "config", digests["params"]),
        ("system", "config", digests["system"]),
        ("template", "config", digests["template"]),
    ]
    assert (plan.name, plan.revision) == ("smollm2:135m", ollama_model.manifest_digest)
    assert plan.notes == ("Ollama image config: family llama, size 134.52M, type Q4_1",)


def test_inspection_reads_a_few_megabytes_of_the_gguf(
    ollama_model: PushedModel, ollama_settings: SourceSettings
) -> None:
    source = CountingSource(open_source(URL, ollama_settings))
    inspect_source(source)
    model = next(s for s in source.opened if s.name == "model.gguf")
    assert model.bytes_read <= 4 << 20 < ollama_model.layer("model").size
    assert sum(s.bytes_read for s in source.opened) < 5 << 20


def test_streaming_the_gguf_matches_its_digest_and_resumes(
    ollama_model: PushedModel, ollama_settings: SourceSettings, real_models: RealModels
) -> None:
    source = open_source(URL, ollama_settings)
    digest = hashlib.sha256()
    for chunk in source.stream("model.gguf", chunk_size=32 << 20):
        assert len(chunk) <= 32 << 20
        digest.update(chunk)
    assert f"sha256:{digest.hexdigest()}" == ollama_model.layer("model").digest
    tail = b"".join(source.stream("model.gguf", offset=ollama_model.layer("model").size - 4096))
    assert tail == real_models.smollm2_gguf.read_bytes()[-4096:]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://ollama.com/library/smollm2:no-such-tag", RevisionNotFound),
        ("https://ollama.com/library/smollm2", SourceNotFound),  # no "latest" tag was pushed
        ("https://www.ollama.com/library/no-such-model:1b", SourceNotFound),
    ],
)
def test_failure_reasons(
    ollama_model: PushedModel,
    ollama_settings: SourceSettings,
    url: str,
    error: type[WorkerError],
) -> None:
    with pytest.raises(error):
        open_source(url, ollama_settings).plan()


def test_a_missing_tag_lists_the_tags_the_model_has(
    ollama_model: PushedModel, ollama_settings: SourceSettings
) -> None:
    source = open_source("https://ollama.com/library/smollm2:7b", ollama_settings)
    with pytest.raises(RevisionNotFound) as caught:
        source.plan()
    assert caught.value.message == "smollm2:7b: the model has no tag '7b'; its tags: 135m"


def test_an_unreachable_registry_is_transient() -> None:
    settings = SourceSettings(ollama_registry="http://127.0.0.1:9", timeout_seconds=5)
    with pytest.raises(SourceUnavailable, match="cannot reach the registry"):
        open_source(URL, settings).plan()


MIRROR_SOURCE = "https://ollama.com/library/tiny:1b"
MIRROR_TOKEN_REQUEST = "/token?scope=repository%3Alibrary%2Ftiny%3Apull&service=ai-models-test"


def _mirror_source(mirror: OllamaMirror, auth_file: Path | None) -> Source:
    settings = SourceSettings(ollama_registry=mirror.url, timeout_seconds=20)
    return OllamaSource(
        OllamaSpec(MIRROR_SOURCE, "tiny", "1b", tag_given=True),
        OllamaRegistryClient(settings, auth_file=auth_file),
    )


def test_a_token_protected_mirror_through_the_bearer_challenge(
    ollama_mirror: OllamaMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(ollama_mirror.registry.auth_file))
    settings = SourceSettings(ollama_registry=ollama_mirror.url, timeout_seconds=20)
    asked_before = len(ollama_mirror.registry.token_requests)
    source = open_source(MIRROR_SOURCE, settings)  # the credentials: REGISTRY_AUTH_FILE's
    assert source.plan().revision == ollama_mirror.model.manifest_digest
    model = ollama_mirror.model.layer("model")
    streamed = hashlib.sha256(b"".join(source.stream("model.gguf")))
    assert f"sha256:{streamed.hexdigest()}" == model.digest
    # One token for the repository's pull scope, reused by the manifest, config and blob reads.
    assert ollama_mirror.registry.token_requests[asked_before:] == [MIRROR_TOKEN_REQUEST]


@pytest.mark.parametrize("credentials", ["wrong", "none"])
def test_a_token_protected_mirror_refuses_other_credentials(
    ollama_mirror: OllamaMirror, credentials: str
) -> None:
    auth_file = ollama_mirror.registry.wrong_auth_file if credentials == "wrong" else None
    with pytest.raises(SourceUnauthorized) as caught:
        _mirror_source(ollama_mirror, auth_file).plan()
    assert caught.value.message == "library/tiny:1b: the registry refused access (HTTP 401)"
