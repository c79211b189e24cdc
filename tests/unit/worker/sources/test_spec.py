"""The source strings the worker accepts, and the ones it rejects with InvalidSource."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from api.model import SOURCE_URL_PATTERN
from worker.errors import InvalidSource
from worker.sources.spec import (
    JOB_SCHEME_SUFFIX,
    HuggingFaceSpec,
    LocalSpec,
    OllamaSpec,
    SourceSpec,
    parse_source,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
HF = "https://huggingface.co"


def _hf(repo_id: str, revision: str | None = None, file: str | None = None) -> Expected:
    return lambda url: HuggingFaceSpec(url, repo_id, revision, file)


def _ollama(name: str, tag: str | None = None) -> Expected:
    return lambda url: OllamaSpec(url, name, tag or "latest", tag_given=tag is not None)


def _local(path: str) -> Expected:
    return lambda url: LocalSpec(url, Path(path))


Expected = Callable[[str], SourceSpec]
ACCEPTED: list[tuple[str, Expected]] = [
    (f"{HF}/org/repo", _hf("org/repo")),
    (f"{HF}/org/repo/", _hf("org/repo")),
    ("https://www.huggingface.co/org/repo", _hf("org/repo")),
    ("https://hf.co/org/repo", _hf("org/repo")),
    (f"{HF}/gpt2", _hf("gpt2")),
    (f"{HF}/gpt2/tree/main", _hf("gpt2", "main")),
    (f"{HF}/Org-1/Repo_2.5-GGUF", _hf("Org-1/Repo_2.5-GGUF")),
    (f"{HF}/org/repo/tree/v1.0", _hf("org/repo", "v1.0")),
    (f"{HF}/org/repo/tree/{SHA}", _hf("org/repo", SHA)),
    (f"{HF}/org/repo/tree/refs/pr/1", _hf("org/repo", "refs/pr/1")),
    (f"{HF}/org/repo/tree/refs%2Fpr%2F1", _hf("org/repo", "refs/pr/1")),
    (f"{HF}/org/repo?revision=dev", _hf("org/repo", "dev")),
    (f"{HF}/org/repo/tree/dev?revision=dev", _hf("org/repo", "dev")),
    (f"{HF}/org/repo?file=m-Q4_K_M.gguf", _hf("org/repo", None, "m-Q4_K_M.gguf")),
    (f"{HF}/org/repo?file=q4/m-00001-of-00002.gguf&revision=v2",
     _hf("org/repo", "v2", "q4/m-00001-of-00002.gguf")),
    (f"{HF}/org/repo/blob/main/m.Q8_0.gguf", _hf("org/repo", "main", "m.Q8_0.gguf")),
    (f"{HF}/org/repo/resolve/refs/pr/3/sub/m.gguf", _hf("org/repo", "refs/pr/3", "sub/m.gguf")),
    (f"{HF}/org/repo#readme", _hf("org/repo")),
    ("https://ollama.com/library/llama3.2", _ollama("llama3.2")),
    ("https://ollama.com/library/llama3.2:1b", _ollama("llama3.2", "1b")),
    ("https://www.ollama.com/library/qwen2.5-coder:7b-instruct-q4_K_M",
     _ollama("qwen2.5-coder", "7b-instruct-q4_K_M")),
    ("https://ollama.com/library/smollm2:135m/", _ollama("smollm2", "135m")),
    ("https://ollama.com/library/smollm2:latest", _ollama("smollm2", "latest")),
    ("/models/minilm", _local("/models/minilm")),
    ("./model.gguf", _local("model.gguf")),
    ("../shared/model.safetensors", _local("../shared/model.safetensors")),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), ACCEPTED, ids=[s for s, _ in ACCEPTED])
def test_accepted_forms(spec: str, expected: Expected) -> None:
    assert parse_source(spec) == expected(spec)


REJECTED: list[tuple[str, str]] = [
    ("", "1 to 2048 characters"),
    ("x" * 2049, "1 to 2048 characters"),
    (f"{HF}/org/repo\n", "control characters"),
    ("model.gguf", "not a supported source"),
    ("http://huggingface.co/org/repo", "not a supported source"),
    ("hf://org/repo", "not a supported source"),
    ("other+oci://registry.local/repo@sha256:" + "0" * 64, "not a supported source"),
    ("https://user:pw@huggingface.co/org/repo", "credentials and ports"),
    ("https://huggingface.co:443/org/repo", "credentials and ports"),
    ("https://example.com/org/repo", "neither huggingface.co"),
    ("https://huggingface.co.evil.com/org/repo", "neither huggingface.co"),
    (f"{HF}/", "names no repository"),
    (f"{HF}/datasets/org/data", "only model repositories"),
    (f"{HF}/spaces/org/app", "only model repositories"),
    (f"{HF}/org/re..po", "not a valid repository name part"),
    (f"{HF}/org/re--po", "not a valid repository name part"),
    (f"{HF}/org/-repo", "not a valid repository name part"),
    (f"{HF}/org/{'r' * 97}", "not a valid repository name part"),
    (f"{HF}/org//repo", "not a valid repository name part"),
    (f"{HF}/org/repo/extra", "only /tree/<revision>"),
    (f"{HF}/org/repo/tree", "only /tree/<revision>"),
    (f"{HF}/org/repo/blob/main", "only /tree/<revision>"),
    (f"{HF}/org/repo/tree/a..b", "not a valid branch"),
    (f"{HF}/org/repo/tree/-x", "not a valid branch"),
    (f"{HF}/org/repo?revision=", "not a valid branch"),
    (f"{HF}/org/repo?revision=a%20b", "not a valid branch"),
    (f"{HF}/org/repo/tree/v1?revision=v2", "names revision 'v1' but ?revision= names 'v2'"),
    (f"{HF}/org/repo?revision=a&revision=b", "given twice"),
    (f"{HF}/org/repo?branch=main", "unknown query parameter 'branch'"),
    (f"{HF}/org/repo?file=model.safetensors", "must name a .gguf file"),
    (f"{HF}/org/repo?file=../x.gguf", "not a relative path"),
    (f"{HF}/org/repo?file=/abs.gguf", "not a relative path"),
    (f"{HF}/org/repo/blob/main/a.gguf?file=b.gguf", "name different files"),
    ("https://ollama.com/llama3", "use https://ollama.com/library/<name>[:tag]"),
    ("https://ollama.com/library/", "use https://ollama.com/library/<name>[:tag]"),
    ("https://ollama.com/library/llama3/tags", "use https://ollama.com/library/<name>[:tag]"),
    ("https://ollama.com/user/model", "use https://ollama.com/library/<name>[:tag]"),
    ("https://ollama.com/library/Llama3", "not a valid Ollama model name"),
    ("https://ollama.com/library/llama3:", "not a valid Ollama tag"),
    ("https://ollama.com/library/llama3:a:b", "not a valid Ollama tag"),
    ("https://ollama.com/library/llama3?tag=1b", "unknown query parameter 'tag'"),
]


@pytest.mark.parametrize(("spec", "message"), REJECTED, ids=[s[:60] for s, _ in REJECTED])
def test_rejected_forms(spec: str, message: str) -> None:
    with pytest.raises(InvalidSource) as caught:
        parse_source(spec)
    assert message in caught.value.message
    assert caught.value.reason == "InvalidSource"


@pytest.mark.parametrize("spec", [s for s, _ in ACCEPTED if s.startswith("https://")])
def test_every_accepted_url_passes_the_crd_pattern(spec: str) -> None:
    assert re.match(SOURCE_URL_PATTERN, spec)


def test_the_jobs_own_schemes_end_with_the_suffix_parse_source_checks_first() -> None:
    # parse_source imports their parsers only for such a scheme (a local prepare never does).
    from api.catalog_import import WORKER_SOURCE_SCHEME as CATALOG_SCHEME
    from api.upload import WORKER_SOURCE_SCHEME as UPLOAD_SCHEME

    assert UPLOAD_SCHEME.endswith(JOB_SCHEME_SUFFIX)
    assert CATALOG_SCHEME.endswith(JOB_SCHEME_SUFFIX)
