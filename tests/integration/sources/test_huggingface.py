"""Hugging Face sources against the Hub emulator: pinning, selection, inspection, failures."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import gguf
import pytest
from safetensors import safe_open

from tests.ground.hub import HubEmulator
from tests.ground.hub_repo import MINILM, MINILM_TAGS
from tests.ground.models import RealModels
from tests.integration.sources.conftest import (
    AMBIGUOUS_GGUF,
    DIFFUSERS,
    GATED,
    GATED_TOKEN,
    GPTQ,
    MULTI_GGUF,
    NO_WEIGHTS,
    OTHER_TOKEN,
    PRIVATE,
    PRIVATE_TOKEN,
    SHARDED,
    SMOLLM2_GGUF,
    UNAVAILABLE,
)
from worker.errors import (
    AmbiguousFormat,
    NoSupportedWeights,
    RevisionNotFound,
    SourceNotFound,
    SourceUnauthorized,
    SourceUnavailable,
    WorkerError,
)
from worker.inspect.resolve import Inspection, inspect_source
from worker.sources import open_source
from worker.sources.settings import SourceSettings

pytestmark = pytest.mark.integration

Settings = Callable[..., SourceSettings]


def _inspect(url: str, settings: SourceSettings) -> Inspection:
    return inspect_source(open_source(url, settings))


def _safetensors_count(*files: Path) -> int:
    total = 0
    for file in files:
        with safe_open(str(file), framework="numpy") as handle:
            for name in handle.keys():  # noqa: SIM118  (safe_open is not a mapping)
                shape = handle.get_slice(name).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count
    return total


def _repo_file(hub: HubEmulator, repo_id: str, path: str) -> Path:
    return hub.repos[repo_id].entries[path].source


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the real MiniLM --------------------------------------------------------------------------


def test_minilm_resolves_exactly(hub: HubEmulator, hub_settings: Settings) -> None:
    inspection = _inspect(f"https://huggingface.co/{MINILM}", hub_settings())
    weights = _repo_file(hub, MINILM, "model.safetensors")
    assert inspection.resolved.to_wire() == {
        "architecture": "BertModel",
        "family": "bert",
        "format": "Safetensors",
        "parameterCount": _safetensors_count(weights),
        "contextWindowTokens": 512,
        "supportedEndpointTypes": ["Embeddings"],
        "sourceCapabilities": {
            "provider": "HuggingFace",
            "tasks": ["sentence-similarity"],
            "features": list(MINILM_TAGS),
        },
    }
    assert inspection.source_status.to_wire() == {
        "resolvedRevision": hub.repos[MINILM].commit,
        "resolvedType": "HuggingFace",
    }
    assert inspection.partial is False


def test_minilm_plan_keeps_the_model_and_its_companions(
    hub: HubEmulator, hub_settings: Settings
) -> None:
    plan = open_source(f"https://hf.co/{MINILM}", hub_settings()).plan()
    assert [(f.path, f.role) for f in plan.files] == [
        ("1_Pooling/config.json", "config"),
        ("README.md", "doc"),
        ("config.json", "config"),
        ("config_sentence_transformers.json", "config"),
        ("model.safetensors", "weight"),
        ("modules.json", "config"),
        ("sentence_bert_config.json", "config"),
        ("special_tokens_map.json", "config"),
        ("tokenizer.json", "config"),
        ("tokenizer_config.json", "config"),
        ("vocab.txt", "config"),
    ]
    weights = plan.file("model.safetensors")
    assert weights is not None
    assert weights.sha256 == _sha256(_repo_file(hub, MINILM, "model.safetensors"))
    assert plan.file("config.json").sha256 is None  # type: ignore[union-attr]  # git, not LFS
    assert plan.name == MINILM
    assert plan.notes == (
        f"pinned the default branch of {MINILM} to commit {hub.repos[MINILM].commit}",
        "dropped 1 file(s) not needed: data_config.json",
    )


def test_inspection_reads_headers_by_range_never_the_weights(
    hub: HubEmulator, hub_settings: Settings
) -> None:
    _inspect(f"https://huggingface.co/{MINILM}", hub_settings())
    cdn = [r for r in hub.requests if r.server == "cdn"]
    weight_bytes = hub.repos[MINILM].weight_bytes
    assert cdn, "the header must come from the LFS origin"
    assert all(r.range is not None and r.status == 206 for r in cdn)
    transferred = sum(r.body_bytes for r in hub.requests)
    assert transferred < weight_bytes / 100, (transferred, weight_bytes)
    assert {r.method for r in hub.requests} == {"GET"}


@pytest.mark.parametrize(
    "url",
    [
        f"https://huggingface.co/{MINILM}/tree/v1.0",
        f"https://www.huggingface.co/{MINILM}?revision=v1.0",
        f"https://hf.co/{MINILM}/tree/main",
    ],
)
def test_every_revision_form_pins_the_commit(
    hub: HubEmulator, hub_settings: Settings, url: str
) -> None:
    plan = open_source(url, hub_settings()).plan()
    assert plan.revision == hub.repos[MINILM].commit


def test_a_commit_sha_pins_itself(hub: HubEmulator, hub_settings: Settings) -> None:
    commit = hub.repos[MINILM].commit
    plan = open_source(f"https://huggingface.co/{MINILM}?revision={commit}", hub_settings()).plan()
    assert (plan.revision, plan.notes[0]) == (
        commit,
        "dropped 1 file(s) not needed: data_config.json",
    )


def test_streaming_returns_the_exact_bytes_and_resumes(
    hub: HubEmulator, hub_settings: Settings
) -> None:
    source = open_source(f"https://huggingface.co/{MINILM}", hub_settings())
    planned = source.plan().file("model.safetensors")
    assert planned is not None
    digest = hashlib.sha256()
    sizes = []
    for chunk in source.stream("model.safetensors", chunk_size=16 << 20):
        digest.update(chunk)
        sizes.append(len(chunk))
    assert digest.hexdigest() == planned.sha256
    assert max(sizes) == 16 << 20
    assert sum(sizes) == planned.size
    tail = b"".join(source.stream("model.safetensors", offset=planned.size - 1000))
    assert tail == _repo_file(hub, MINILM, "model.safetensors").read_bytes()[-1000:]
    config = b"".join(source.stream("config.json", offset=10))
    assert config == _repo_file(hub, MINILM, "config.json").read_bytes()[10:]


# ---- synthetic layouts ------------------------------------------------------------------------


def test_sharded_checkpoint_counts_every_shard(hub: HubEmulator, hub_settings: Settings) -> None:
    inspection = _inspect(f"https://huggingface.co/{SHARDED}", hub_settings())
    shards = [f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    assert inspection.resolved.to_wire() == {
        "architecture": "LlamaForCausalLM",
        "family": "llama",
        "format": "Safetensors",
        "parameterCount": _safetensors_count(*(_repo_file(hub, SHARDED, s) for s in shards)),
        "contextWindowTokens": 4096,
        "supportedEndpointTypes": ["Chat", "TextGeneration"],
        "supportedFeatures": ["ToolCalling"],
        "sourceCapabilities": {"provider": "HuggingFace", "tasks": ["text-generation"]},
    }
    assert [f.path for f in inspection.plan.files] == [
        "LICENSE",
        "README.md",
        "config.json",
        "generation_config.json",
        *shards,
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert inspection.plan.notes[1:] == (
        "chose the safetensors weights model; dropped onnx/model.onnx, pytorch_model.bin",
        "dropped 2 file(s) not needed: onnx/model.onnx, pytorch_model.bin",
    )


def test_gptq_packed_weights_count_as_the_original_parameters(
    hub: HubEmulator, hub_settings: Settings
) -> None:
    inspection = _inspect(f"https://huggingface.co/{GPTQ}", hub_settings())
    # The unquantized model: embeddings and head 64x32 each, a norm of 32, a 32x48 linear layer
    # (stored as int32 qweight [4, 48] with 8 four-bit values per int32, plus scales/zeros).
    assert inspection.resolved.parameter_count == 64 * 32 * 2 + 32 + 32 * 48
    assert inspection.resolved.quantization == "GPTQ-4bit"


def test_diffusers_pipeline_keeps_one_variant_per_component(
    hub: HubEmulator, hub_settings: Settings
) -> None:
    inspection = _inspect(f"https://huggingface.co/{DIFFUSERS}", hub_settings())
    weights = [f.path for f in inspection.plan.files if f.role == "weight"]
    assert weights == [
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert inspection.resolved.to_wire() == {
        "architecture": "StableDiffusionPipeline",
        "format": "Diffusers",
        "parameterCount": _safetensors_count(*(_repo_file(hub, DIFFUSERS, w) for w in weights)),
        "supportedEndpointTypes": ["ImageGeneration"],
        "supportedFeatures": ["ImageOutput"],
        "sourceCapabilities": {"provider": "HuggingFace", "tasks": ["text-to-image"]},
    }
    assert "dropped single-file checkpoints beside the pipeline: v1-5-pruned.safetensors" in (
        inspection.plan.notes
    )


def test_several_ggufs_default_rule_picks_q4_k_m(hub: HubEmulator, hub_settings: Settings) -> None:
    inspection = _inspect(f"https://huggingface.co/{MULTI_GGUF}", hub_settings())
    assert [f.path for f in inspection.plan.files] == [
        "README.md",
        "mmproj-tiny-f16.gguf",
        "tiny-Q4_K_M.gguf",
    ]
    assert inspection.plan.notes[1] == (
        "picked tiny-Q4_K_M.gguf (Q4_K_M) by the default rule among 3 GGUF files "
        "(Q4_K_M, Q8_0, F16); select another with ?file=<path>.gguf"
    )
    reader = gguf.GGUFReader(str(_repo_file(hub, MULTI_GGUF, "tiny-Q4_K_M.gguf")))
    assert inspection.resolved.to_wire() == {
        "architecture": "llama",
        "family": "llama",
        "format": "GGUF",
        "parameterCount": sum(int(t.n_elements) for t in reader.tensors),
        "quantization": "Q4_K_M",
        "contextWindowTokens": 2048,
        "supportedEndpointTypes": ["Chat", "TextGeneration", "ImageToText"],
        "supportedFeatures": ["VisionInput"],
        "sourceCapabilities": {"provider": "HuggingFace"},
    }


@pytest.mark.parametrize(
    ("url", "label"),
    [
        (f"https://huggingface.co/{MULTI_GGUF}?file=tiny-Q8_0.gguf", "Q8_0"),
        (f"https://huggingface.co/{MULTI_GGUF}/blob/main/tiny-F16.gguf", "F16"),
    ],
)
def test_file_selector_picks_that_gguf(hub_settings: Settings, url: str, label: str) -> None:
    inspection = _inspect(url, hub_settings())
    assert inspection.resolved.quantization == label
    assert f"tiny-{label}.gguf" in [f.path for f in inspection.plan.files]


def test_real_smollm2_gguf_repository(
    hub: HubEmulator, hub_settings: Settings, real_models: RealModels
) -> None:
    inspection = _inspect(f"https://huggingface.co/{SMOLLM2_GGUF}", hub_settings())
    reader = gguf.GGUFReader(str(real_models.smollm2_gguf))
    assert inspection.resolved.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert (inspection.resolved.quantization, inspection.resolved.context_window_tokens) == (
        "Q4_1",
        8192,
    )
    transferred = sum(r.body_bytes for r in hub.requests)
    assert transferred < 4 << 20 < real_models.smollm2_gguf.stat().st_size


# ---- failures ---------------------------------------------------------------------------------


def _fails(url: str, settings: SourceSettings, error: type[WorkerError]) -> WorkerError:
    with pytest.raises(error) as caught:
        _inspect(url, settings)
    return caught.value


def _chain(error: BaseException) -> str:
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(repr(current) + str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("url", "token", "error"),
    [
        ("https://huggingface.co/test/does-not-exist", OTHER_TOKEN, SourceNotFound),
        ("https://huggingface.co/test/does-not-exist", None, SourceUnauthorized),
        (f"https://huggingface.co/{MINILM}/tree/no-such-branch", None, RevisionNotFound),
        (f"https://huggingface.co/{PRIVATE}", None, SourceUnauthorized),
        (f"https://huggingface.co/{PRIVATE}", OTHER_TOKEN, SourceNotFound),
        (f"https://huggingface.co/{PRIVATE}", "hf_not_a_known_token", SourceUnauthorized),
        (f"https://huggingface.co/{GATED}", None, SourceUnauthorized),
        (f"https://huggingface.co/{GATED}", OTHER_TOKEN, SourceUnauthorized),
        (f"https://huggingface.co/{AMBIGUOUS_GGUF}", None, AmbiguousFormat),
        (f"https://huggingface.co/{MULTI_GGUF}?file=nope.gguf", None, SourceNotFound),
        (f"https://huggingface.co/{NO_WEIGHTS}", None, NoSupportedWeights),
        (f"https://huggingface.co/{UNAVAILABLE}", None, SourceUnavailable),
    ],
)
def test_failure_reasons(
    hub_settings: Settings, url: str, token: str | None, error: type[WorkerError]
) -> None:
    failure = _fails(url, hub_settings(token), error)
    if token:
        assert token not in _chain(failure)


def test_no_weights_names_what_it_found(hub_settings: Settings) -> None:
    failure = _fails(f"https://huggingface.co/{NO_WEIGHTS}", hub_settings(), NoSupportedWeights)
    assert failure.message == (
        f"{NO_WEIGHTS}: no safetensors or GGUF weights; found weights in other formats: "
        "pytorch_model.bin"
    )


@pytest.mark.parametrize(("repo", "token"), [(PRIVATE, PRIVATE_TOKEN), (GATED, GATED_TOKEN)])
def test_a_granted_token_opens_the_repository_and_never_reaches_the_cdn(
    hub: HubEmulator, hub_settings: Settings, repo: str, token: str
) -> None:
    inspection = _inspect(f"https://huggingface.co/{repo}", hub_settings(token))
    assert inspection.resolved.architecture == "LlamaForCausalLM"
    assert all(r.authorized for r in hub.requests if r.server == "hub")
    assert not any(r.authorized for r in hub.requests if r.server == "cdn")
    assert any(r.server == "cdn" for r in hub.requests)


def test_gated_metadata_is_public_until_a_file_is_read(hub_settings: Settings) -> None:
    source = open_source(f"https://huggingface.co/{GATED}", hub_settings())
    assert source.plan().format == "Safetensors"
    with pytest.raises(SourceUnauthorized, match="gated"):
        inspect_source(source)


def test_an_unreachable_endpoint_is_transient() -> None:
    settings = SourceSettings(hf_endpoint="http://127.0.0.1:9", timeout_seconds=5)
    with pytest.raises(SourceUnavailable, match="cannot reach the Hub"):
        open_source(f"https://huggingface.co/{MINILM}", settings).plan()
