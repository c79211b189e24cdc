"""One spelling per source: what the artifact records and what the controller groups by."""

from __future__ import annotations

import pytest

from api.source import hugging_face_url, ollama_url, source_repository
from worker.sources.spec import parse_source

MINILM = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
SPELLINGS = (
    MINILM,
    MINILM + "/",
    "https://hf.co/sentence-transformers/all-MiniLM-L6-v2",
    "https://www.huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
    "https://HuggingFace.co/sentence-transformers/all-MiniLM-L6-v2",
    MINILM + "/tree/main",
    MINILM + "/tree/v1.0",
    MINILM + "?revision=c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
)


@pytest.mark.parametrize("url", SPELLINGS)
def test_every_spelling_of_a_hub_repository_is_one_url(url: str) -> None:
    assert parse_source(url).canonical_url == MINILM
    assert source_repository(url) == MINILM


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/org/repo?file=q/model-Q4_K_M.gguf",
        "https://hf.co/org/repo/blob/main/q/model-Q4_K_M.gguf",
        "https://huggingface.co/org/repo/resolve/main/q/model-Q4_K_M.gguf",
    ],
)
def test_a_picked_gguf_file_is_part_of_the_canonical_url(url: str) -> None:
    canonical = "https://huggingface.co/org/repo?file=q/model-Q4_K_M.gguf"
    assert parse_source(url).canonical_url == canonical
    assert source_repository(url) == "https://huggingface.co/org/repo"


def test_a_legacy_id_without_an_org() -> None:
    assert parse_source("https://hf.co/gpt2/tree/main").canonical_url == (
        "https://huggingface.co/gpt2"
    )
    assert source_repository("https://hf.co/gpt2/tree/main") == "https://huggingface.co/gpt2"


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://ollama.com/library/smollm2", "https://ollama.com/library/smollm2:latest"),
        (
            "https://www.ollama.com/library/smollm2:latest",
            "https://ollama.com/library/smollm2:latest",
        ),
        ("https://ollama.com/library/smollm2:135m", "https://ollama.com/library/smollm2:135m"),
    ],
)
def test_ollama_spellings(url: str, canonical: str) -> None:
    assert parse_source(url).canonical_url == canonical
    assert source_repository(url) == "https://ollama.com/library/smollm2"


def test_a_local_path_is_recorded_as_given() -> None:
    assert parse_source("./models/tiny").canonical_url == "./models/tiny"


@pytest.mark.parametrize(
    "url", ["./models/tiny", "http://huggingface.co/org/repo", "https://huggingface.co/",
            "https://example.com/org/repo", "https://ollama.com/org/x", ""]
)  # fmt: skip
def test_no_repository_outside_the_two_providers(url: str) -> None:
    assert source_repository(url) is None


def test_spellers() -> None:
    assert hugging_face_url("org/repo") == "https://huggingface.co/org/repo"
    assert (
        hugging_face_url("org/repo", "a b.gguf")
        == "https://huggingface.co/org/repo?file=a%20b.gguf"
    )
    assert ollama_url("smollm2", "135m") == "https://ollama.com/library/smollm2:135m"
