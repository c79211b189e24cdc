"""LocalSource on temporary directories: selection, single files, links, hidden folders, reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import InvalidWeights, NoSupportedWeights, SourceNotFound
from worker.sources import HuggingFaceSource, LocalSource, OllamaSource, open_source
from worker.sources.settings import SourceSettings
from worker.sources.spec import LocalSpec


def _local(path: Path) -> LocalSource:
    return LocalSource(LocalSpec(str(path), path))


def _model_dir(root: Path) -> Path:
    root.mkdir()
    (root / "model.safetensors").write_bytes(b"w" * 100)
    (root / "config.json").write_text("{}")
    (root / ".git").mkdir()
    (root / ".git" / "lfs-copy.safetensors").write_bytes(b"x")
    (root / ".cache").mkdir()
    (root / ".cache" / "huggingface").write_text("")
    return root


def test_a_directory_goes_through_the_selection_rules(tmp_path: Path) -> None:
    root = _model_dir(tmp_path / "minilm")
    source = open_source(str(root), SourceSettings())
    plan = source.plan()
    assert [(f.path, f.size, f.role, f.sha256) for f in plan.files] == [
        ("config.json", 2, "config", None),
        ("model.safetensors", 100, "weight", None),
    ]
    assert (plan.source_type, plan.revision, plan.name, plan.format, plan.local) == (
        None,
        None,
        "minilm",
        "Safetensors",
        True,  # publishing hashes the files before it sends (and skips what the target has)
    )


def test_reads_and_streams_from_an_offset(tmp_path: Path) -> None:
    root = _model_dir(tmp_path / "m")
    (root / "model.safetensors").write_bytes(bytes(range(100)))
    source = _local(root)
    assert source.byte_source("model.safetensors").read_at(10, 5) == bytes(range(10, 15))
    chunks = list(source.stream("model.safetensors", offset=50, chunk_size=20))
    assert chunks == [bytes(range(50, 70)), bytes(range(70, 90)), bytes(range(90, 100))]
    with pytest.raises(KeyError):
        source.byte_source("../etc/passwd")


@pytest.mark.parametrize(("name", "fmt"), [("m.gguf", "GGUF"), ("m.safetensors", "Safetensors")])
def test_a_single_file(tmp_path: Path, name: str, fmt: str) -> None:
    (tmp_path / name).write_bytes(b"abc")
    plan = _local(tmp_path / name).plan()
    assert (plan.format, plan.name, [(f.path, f.role) for f in plan.files], plan.local) == (
        fmt,
        "m",
        [(name, "weight")],
        True,
    )


def test_a_single_file_of_another_format(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"abc")
    with pytest.raises(NoSupportedWeights, match=r"must be a \.gguf or \.safetensors file"):
        _local(tmp_path / "model.bin").plan()


def test_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="no such file or directory"):
        _local(tmp_path / "nothing").plan()


def test_a_link_inside_the_tree_is_followed_one_outside_is_refused(tmp_path: Path) -> None:
    root = _model_dir(tmp_path / "m")
    (root / "tokenizer.json").symlink_to(root / "config.json")
    assert _local(root).plan().file("tokenizer.json") is not None
    outside = tmp_path / "secret"
    outside.write_text("secret")
    (root / "vocab.txt").symlink_to(outside)
    with pytest.raises(InvalidWeights, match=r"vocab\.txt: a link pointing out of the model"):
        _local(root).plan()


def test_open_source_picks_the_provider_without_touching_the_network(tmp_path: Path) -> None:
    settings = SourceSettings(
        hf_endpoint="http://127.0.0.1:9", ollama_registry="http://127.0.0.1:9"
    )
    assert isinstance(open_source("https://hf.co/org/repo", settings), HuggingFaceSource)
    assert isinstance(open_source("https://ollama.com/library/m", settings), OllamaSource)
    assert isinstance(open_source(str(tmp_path), settings), LocalSource)
