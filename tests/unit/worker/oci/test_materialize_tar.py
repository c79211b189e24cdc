"""materialize of tar layers (``…v1.tar``, ``+gzip``, ``+zstd``) from layouts built by hand:
the exact files, re-runs skipped, and hostile archives refused with nothing written outside."""

from __future__ import annotations

import stat
import tarfile
from pathlib import Path

import pytest

from tests.unit.worker.oci.artifacts import (
    TAR,
    TAR_GZIP,
    TAR_ZSTD,
    Layer,
    gzipped,
    special,
    tar_of,
    tree,
    write_layout,
    zstd,
)
from worker.errors import InvalidWeights
from worker.oci import tar_layer
from worker.oci.materialize import PARTIAL_DIR, materialize

CONFIG = b'{"hidden_size": 8}'
WEIGHTS = bytes(range(256)) * 40


def test_tar_gzip_and_zstd_layers_unpack_to_the_exact_files(tmp_path: Path) -> None:
    layers = [
        Layer("model.safetensors", tar_of([("model.safetensors", WEIGHTS)]), TAR),
        Layer("config.json", gzipped(tar_of([("config.json", CONFIG)])), TAR_GZIP),
        Layer(
            "tokenizer",
            zstd(
                tar_of([special("tokenizer", tarfile.DIRTYPE), ("tokenizer/vocab.txt", b"a\nb\n")])
            ),
            TAR_ZSTD,
        ),
        Layer("deep/nested/README.md", tar_of([("./deep/nested/README.md", b"# hi\n")]), TAR),
    ]
    ref = write_layout(tmp_path / "layout", layers)
    out = tmp_path / "model"
    result = materialize(ref, out)
    assert tree(out) == {
        "config.json": CONFIG,
        "deep/nested/README.md": b"# hi\n",
        "model.safetensors": WEIGHTS,
        "tokenizer/vocab.txt": b"a\nb\n",
    }
    assert [f.skipped for f in result.files] == [False] * 4
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) == 0o644  # no setuid
    assert not (out / PARTIAL_DIR).exists()
    assert all(f.skipped for f in materialize(ref, out).files)

    (out / "tokenizer/vocab.txt").write_bytes(b"changed")  # a member changed: unpacked again
    again = materialize(ref, out)
    assert [f.skipped for f in again.files] == [True, True, False, True]
    assert (out / "tokenizer/vocab.txt").read_bytes() == b"a\nb\n"


def test_identical_tar_layers_at_different_paths_are_refused_not_misplaced(tmp_path: Path) -> None:
    blob = tar_of([("a/LICENSE", b"MIT")])
    ref = write_layout(
        tmp_path / "layout", [Layer("a/LICENSE", blob, TAR), Layer("b/LICENSE", blob, TAR)]
    )
    with pytest.raises(
        InvalidWeights, match=r"member 'a/LICENSE' lies outside the layer's path 'b/LICENSE'"
    ):
        materialize(ref, tmp_path / "model")


HOSTILE = [
    (
        "x",
        [("../x", b"evil")],
        "member: file path '../x' has an empty, '.' or '..' component; refusing to write it",
    ),
    ("abs", ["ABSOLUTE"], "is absolute; refusing to write it"),
    (
        "w",
        [special("w/passwd", tarfile.SYMTYPE, "/etc/passwd")],
        "member 'w/passwd' is a symlink; refusing to unpack it",
    ),
    (
        "w",
        [special("w/hard", tarfile.LNKTYPE, "../../outside/victim")],
        "member 'w/hard' is a hardlink; refusing to unpack it",
    ),
    (
        "w",
        [special("w/null", tarfile.CHRTYPE)],
        "member 'w/null' is a character device; refusing to unpack it",
    ),
    (
        "w",
        [special("w/pipe", tarfile.FIFOTYPE)],
        "member 'w/pipe' is a FIFO; refusing to unpack it",
    ),
    (
        "w",
        [("w/ok", b"fine"), ("w/../../x", b"evil")],
        "has an empty, '.' or '..' component; refusing to write it",
    ),
    ("w", [("w/a\nb", b"evil")], "contains a control character; refusing to write it"),
    (
        "w",
        [("other/x", b"evil")],
        "member 'other/x' lies outside the layer's path 'w'; refusing to unpack it",
    ),
    (
        "w",
        [("w/.ai-models-partial", b"x"), ("w/a", b"1"), ("w/a", b"2")],
        "member 'w/a' appears twice",
    ),
]


@pytest.mark.parametrize(("layer_path", "members", "message"), HOSTILE)
def test_hostile_tar_members_are_refused_and_nothing_is_written_outside(
    tmp_path: Path, layer_path: str, members: list[object], message: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"precious")
    if members == ["ABSOLUTE"]:
        members = [(f"{outside}/victim", b"evil")]
        layer_path = str(outside / "victim")[1:]  # the annotation itself is relative
    blob = tar_of(members)  # type: ignore[arg-type]
    ref = write_layout(tmp_path / "layout", [Layer(layer_path, blob, TAR)])
    out = tmp_path / "model"
    with pytest.raises(InvalidWeights) as caught:
        materialize(ref, out)
    assert caught.value.message.endswith(message), caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout", "model", "outside"]
    assert [p.name for p in outside.iterdir()] == ["victim"]
    assert (outside / "victim").read_bytes() == b"precious"
    assert list((out / PARTIAL_DIR).iterdir()) == []  # the refused blob is not kept


def test_a_huge_declared_member_size_is_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("w/huge")
    info.size = 1 << 40
    blob = info.tobuf(tarfile.PAX_FORMAT) + bytes(1024)
    ref = write_layout(tmp_path / "layout", [Layer("w", blob, TAR)])
    with pytest.raises(InvalidWeights, match=r"member 'w/huge' declares 1,099,511,627,776 bytes"):
        materialize(ref, tmp_path / "model")
    assert not (tmp_path / "model/w/huge").exists()


def test_a_decompression_bomb_is_stopped_by_the_expansion_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tar_layer, "MIN_EXPANSION_BUDGET", 1 << 20)
    monkeypatch.setattr(tar_layer, "MAX_EXPANSION", 100)
    blob = gzipped(tar_of([("w/zeros", bytes(4 << 20))]))  # 4 MiB of zeros in ~4 KiB
    assert len(blob) < 10_000
    ref = write_layout(tmp_path / "layout", [Layer("w", blob, TAR_GZIP)])
    with pytest.raises(
        InvalidWeights, match=r"member 'w/zeros' declares 4,194,304 bytes, more than"
    ):
        materialize(ref, tmp_path / "model")
    assert not (tmp_path / "model/w/zeros").exists()
