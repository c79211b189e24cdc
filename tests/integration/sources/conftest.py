"""Fixtures of the source tests: the Hub emulator with its repositories, an Ollama model pushed
into the real registry, and the worker settings that point at them (127.0.0.1 only).

- ``hub`` (session): ``tests.ground.hub.HubEmulator`` serving, by repo id, the ``REPOS`` below;
  pages of 5 entries so the tree listing's pagination runs; token ``PRIVATE_TOKEN`` grants the
  private repository, ``GATED_TOKEN`` the gated one, ``OTHER_TOKEN`` nothing.
- ``hub_settings(token=None)``: ``SourceSettings`` for the emulator (a factory fixture).
- ``ollama_model`` (session): SmolLM2 pushed as ``library/smollm2:135m`` into ``registry``;
  ``ollama_settings`` points the worker at that registry.
- ``ollama_mirror`` (session): a token-protected mirror (``tests.ground.token_registry``: Bearer
  tokens only for the pusher's Basic credentials) holding a tiny GGUF as ``library/tiny:1b``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ground.hub import HubEmulator, run_hub
from tests.ground.hub_repo import HubRepo, minilm_repo
from tests.ground.models import RealModels
from tests.ground.ollama import PushedModel, push_ollama_model
from tests.ground.registry import Registry
from tests.ground.token_registry import TokenRegistry, run_token_registry
from tests.integration.sources import builders
from worker.sources.settings import SourceSettings

SMOLLM2_GGUF = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
SHARDED = "test/sharded-llama"
GPTQ = "test/tiny-gptq"
DIFFUSERS = "test/tiny-diffusers"
MULTI_GGUF = "test/multi-gguf"
AMBIGUOUS_GGUF = "test/ambiguous-gguf"
PRIVATE = "test/private"
GATED = "test/gated"
NO_WEIGHTS = "test/no-weights"
UNAVAILABLE = "test/unavailable"
PRIVATE_TOKEN = "hf_private_token_for_tests_0123456789"
GATED_TOKEN = "hf_gated_token_for_tests_0123456789"
OTHER_TOKEN = "hf_other_token_for_tests_0123456789"

OLLAMA_TEMPLATE = (
    "{{- if .Messages }}{{- if or .System .Tools }}<|im_start|>system\n{{ .System }}"
    "{{- if .Tools }}\n<tools>{{ range .Tools }}{{ . }}{{ end }}</tools>{{ end }}<|im_end|>\n"
    "{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n{{ else }}{{ .Prompt }}{{ end }}"
)


def _repos(real: RealModels, work: Path) -> list[HubRepo]:
    smollm2_readme = work / "smollm2-README.md"
    smollm2_readme.write_text("# SmolLM2-135M-Instruct GGUF\n")
    return [
        minilm_repo(real),
        HubRepo(
            SMOLLM2_GGUF,
            {"SmolLM2-135M-Instruct.Q4_1.gguf": real.smollm2_gguf, "README.md": smollm2_readme},
            pipeline_tag="text-generation",
            tags=("gguf", "llama", "conversational"),
        ),
        HubRepo.from_dir(
            SHARDED, builders.sharded_repo(work / "sharded"), pipeline_tag="text-generation"
        ),
        HubRepo.from_dir(GPTQ, builders.gptq_repo(work / "gptq")),
        HubRepo.from_dir(
            DIFFUSERS, builders.diffusers_repo(work / "diffusers"), pipeline_tag="text-to-image"
        ),
        HubRepo.from_dir(MULTI_GGUF, builders.multi_gguf_repo(work / "multi-gguf")),
        HubRepo.from_dir(AMBIGUOUS_GGUF, builders.ambiguous_gguf_repo(work / "ambiguous")),
        HubRepo.from_dir(PRIVATE, builders.small_repo(work / "private"), private=True),
        HubRepo.from_dir(GATED, builders.small_repo(work / "gated"), gated=True),
        HubRepo.from_dir(NO_WEIGHTS, builders.no_weights_repo(work / "no-weights")),
        HubRepo.from_dir(UNAVAILABLE, builders.small_repo(work / "unavailable"), failure=503),
    ]


@pytest.fixture(scope="session")
def hub(real_models: RealModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEmulator]:
    with run_hub(page_size=5) as emulator:
        for repo in _repos(real_models, tmp_path_factory.mktemp("hub-repos")):
            emulator.add(repo)
        emulator.grant(PRIVATE_TOKEN, PRIVATE)
        emulator.grant(GATED_TOKEN, GATED)
        emulator.grant(OTHER_TOKEN)
        yield emulator


@pytest.fixture
def hub_settings(hub: HubEmulator) -> Callable[..., SourceSettings]:
    def make(token: str | None = None) -> SourceSettings:
        return SourceSettings(hf_endpoint=hub.url, hf_token=token, timeout_seconds=20)

    hub.clear_requests()
    return make


@pytest.fixture(scope="session")
def ollama_model(registry: Registry, real_models: RealModels) -> PushedModel:
    return push_ollama_model(
        registry.url,
        "smollm2",
        "135m",
        gguf=real_models.smollm2_gguf,
        config={
            "model_format": "gguf",
            "model_family": "llama",
            "model_families": ["llama"],
            "model_type": "134.52M",
            "file_type": "Q4_1",
            "architecture": "amd64",
            "os": "linux",
        },
        template=OLLAMA_TEMPLATE,
        params={"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.2, "top_p": 0.9},
        system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        license_text="Apache License\nVersion 2.0, January 2004\n",
    )


@pytest.fixture
def ollama_settings(registry: Registry) -> SourceSettings:
    return SourceSettings(ollama_registry=registry.url, timeout_seconds=20)


@dataclass(frozen=True)
class OllamaMirror:
    registry: TokenRegistry
    model: PushedModel

    @property
    def url(self) -> str:
        return f"http://{self.registry.host}"


@pytest.fixture(scope="session")
def ollama_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaMirror]:
    work = tmp_path_factory.mktemp("ollama-mirror")
    with run_token_registry(work) as registry:
        gguf = builders.write_gguf(work / "tiny.gguf", "llama", 1)  # 1: MOSTLY_F16
        token = registry.token("repository:library/tiny:pull,push")
        model = push_ollama_model(
            f"http://{registry.host}", "tiny", "1b", gguf=gguf,
            config={"model_format": "gguf", "model_family": "llama"}, token=token,
        )  # fmt: skip
        yield OllamaMirror(registry, model)
