"""materialize from OCI layouts built by hand: identical layers, a file as DIR, damaged partial
files, symlinks and FIFOs planted at every path the materializer writes, refused manifests."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.worker.oci.artifacts import Layer, sha256, tree, write_layout, write_manifest
from worker.errors import (
    DestinationNotADirectory,
    InvalidWeights,
    UnsafeDestination,
    UnsupportedArtifact,
)
from worker.oci.layout import OciLayout
from worker.oci.materialize import PARTIAL_DIR, STATE_FILE, materialize

WEIGHTS = bytes(range(256)) * 64  # 16 KiB
LICENSE = b"Apache License 2.0\n"
TOKENIZER = b'{"model": {"type": "BPE"}}'
LAYERS = [
    Layer("model.safetensors", WEIGHTS),
    Layer("LICENSE", LICENSE, "application/vnd.cncf.model.doc.v1.raw"),
    Layer("docs/LICENSE", LICENSE, "application/vnd.cncf.model.doc.v1.raw"),
    Layer("tokenizer/tokenizer.json", TOKENIZER, "application/vnd.cncf.model.weight.config.v1.raw"),
    Layer(
        "tokenizer_2/tokenizer.json", TOKENIZER, "application/vnd.cncf.model.weight.config.v1.raw"
    ),
]
EXPECTED = {layer.path: layer.data for layer in LAYERS}


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, int]]:
    """(digest, offset) of every blob read from a layout."""
    seen: Counter[tuple[str, int]] = Counter()
    original = OciLayout.blob_chunks

    def counting(self: OciLayout, digest: str, offset: int = 0) -> Iterator[bytes]:
        seen[(digest, offset)] += 1
        return original(self, digest, offset)

    monkeypatch.setattr(OciLayout, "blob_chunks", counting)
    return seen


def test_identical_layers_are_fetched_once_and_written_to_every_path(
    tmp_path: Path, fetches: Counter[tuple[str, int]]
) -> None:
    ref = write_layout(tmp_path / "layout", LAYERS)
    out = tmp_path / "model"
    result = materialize(ref, out, concurrency=4)
    assert tree(out) == EXPECTED
    assert [(f.path, f.skipped) for f in result.files] == [(x.path, False) for x in LAYERS]
    assert fetches == Counter({(sha256(d), 0): 1 for d in (WEIGHTS, LICENSE, TOKENIZER)})
    assert not (out / PARTIAL_DIR).exists()
    assert stat.S_IMODE((out / "docs/LICENSE").stat().st_mode) == 0o644

    again = materialize(ref, out, concurrency=4)
    assert all(f.skipped for f in again.files)
    assert sum(fetches.values()) == 3


def test_a_regular_file_as_the_directory_is_a_named_error(tmp_path: Path) -> None:
    ref = write_layout(tmp_path / "layout", LAYERS[:1])
    target = tmp_path / "model"
    target.write_bytes(b"not a directory")
    with pytest.raises(DestinationNotADirectory) as caught:
        materialize(ref, target)
    assert caught.value.message == (
        f"{target}: exists and is not a directory; give materialize --to a directory (or a path "
        "that does not exist yet)"
    )
    assert caught.value.exit_code == 2
    assert target.read_bytes() == b"not a directory"


def test_a_damaged_partial_is_refetched_from_zero_not_blamed_on_the_artifact(
    tmp_path: Path, fetches: Counter[tuple[str, int]]
) -> None:
    ref = write_layout(tmp_path / "layout", LAYERS[:1])
    out = tmp_path / "model"
    (out / PARTIAL_DIR).mkdir(parents=True)
    damaged = bytearray(WEIGHTS[:5000])
    damaged[100] ^= 0xFF  # the disk (or a killed writer) damaged what an earlier attempt kept
    (out / PARTIAL_DIR / sha256(WEIGHTS)[7:]).write_bytes(bytes(damaged))
    result = materialize(ref, out)
    assert tree(out) == {"model.safetensors": WEIGHTS}
    assert not result.files[0].skipped
    assert fetches == Counter({(sha256(WEIGHTS), 5000): 1, (sha256(WEIGHTS), 0): 1})


def test_a_good_partial_is_resumed_where_it_stops(
    tmp_path: Path, fetches: Counter[tuple[str, int]]
) -> None:
    ref = write_layout(tmp_path / "layout", LAYERS[:1])
    out = tmp_path / "model"
    (out / PARTIAL_DIR).mkdir(parents=True)
    (out / PARTIAL_DIR / sha256(WEIGHTS)[7:]).write_bytes(WEIGHTS[:5000])
    materialize(ref, out)
    assert tree(out) == {"model.safetensors": WEIGHTS}
    assert fetches == Counter({(sha256(WEIGHTS), 5000): 1})


def test_freshly_fetched_wrong_bytes_are_the_artifacts_fault(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    ref = write_layout(layout, LAYERS[:1])
    blob = layout / "blobs/sha256" / sha256(WEIGHTS)[7:]
    blob.write_bytes(b"x" + WEIGHTS[1:])
    out = tmp_path / "model"
    with pytest.raises(InvalidWeights) as caught:
        materialize(ref, out)
    actual = sha256(blob.read_bytes())
    assert caught.value.message == (
        f"model.safetensors: blob {sha256(WEIGHTS)} from {ref} has sha256 {actual}, the manifest "
        f"says {sha256(WEIGHTS)}: the stored copy is corrupt; republish the model"
    )
    assert list((out / PARTIAL_DIR).iterdir()) == []
    assert not (out / "model.safetensors").exists()


# ---- things planted in the directory ---------------------------------------------------------

HEX = sha256(WEIGHTS)[7:]
VICTIM = b"precious bytes outside the directory\n"


def _plant_link(out: Path, where: str, outside: Path) -> None:
    """A symlink at ``where`` to the victim file (or, for a directory, to ``outside``)."""
    (out / where).parent.mkdir(parents=True, exist_ok=True)
    is_dir = where in (PARTIAL_DIR, "sub")
    (out / where).symlink_to(outside if is_dir else outside / "victim")


@pytest.mark.parametrize(
    ("where", "layer_path", "journal_lines"),
    [
        (PARTIAL_DIR, "model.safetensors", 0),
        (f"{PARTIAL_DIR}/{HEX}", "model.safetensors", 0),
        (STATE_FILE, "model.safetensors", 0),
        (f"{STATE_FILE}.tmp", "model.safetensors", 3000),  # written when compacting the journal
        ("model.safetensors", "model.safetensors", 0),
        ("sub", "sub/model.safetensors", 0),
        ("sub/model.safetensors", "sub/model.safetensors", 0),
    ],
)
def test_a_symlink_at_a_working_path_is_refused_and_nothing_outside_changes(
    tmp_path: Path, where: str, layer_path: str, journal_lines: int
) -> None:
    ref = write_layout(tmp_path / "layout", [Layer(layer_path, WEIGHTS)])
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("victim", HEX, "model.safetensors"):
        (outside / name).write_bytes(VICTIM)
        (outside / name).chmod(0o600)
    out = tmp_path / "model"
    out.mkdir()
    if journal_lines:
        line = json.dumps({"path": "x", "digest": sha256(b"x"), "files": {"x": [1, 1]}})
        (out / STATE_FILE).write_text((line + "\n") * journal_lines)
    _plant_link(out, where, outside)
    with pytest.raises(UnsafeDestination) as caught:
        materialize(ref, out)
    assert caught.value.message == (
        f"{out}/{where}: is a symlink; materialize never writes through links or special files "
        "in its directory: remove it (or use an empty directory) and run again"
    )
    for name in ("victim", HEX, "model.safetensors"):
        assert (outside / name).read_bytes() == VICTIM
        assert stat.S_IMODE((outside / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in outside.iterdir()) == sorted(["victim", HEX, "model.safetensors"])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", [f"{PARTIAL_DIR}/{HEX}", STATE_FILE, "model.safetensors"])
def test_a_fifo_at_a_file_path_is_refused_without_hanging(tmp_path: Path, where: str) -> None:
    ref = write_layout(tmp_path / "layout", [Layer("model.safetensors", WEIGHTS)])
    out = tmp_path / "model"
    (out / where).parent.mkdir(parents=True)
    os.mkfifo(out / where)
    with pytest.raises(UnsafeDestination, match=rf"^{out}/{where}: is a FIFO; materialize never"):
        materialize(ref, out)


def test_a_directory_where_a_file_goes_is_refused(tmp_path: Path) -> None:
    ref = write_layout(tmp_path / "layout", [Layer("model.safetensors", WEIGHTS)])
    out = tmp_path / "model"
    (out / "model.safetensors").mkdir(parents=True)
    with pytest.raises(UnsafeDestination, match=r"model\.safetensors: is a directory;"):
        materialize(ref, out)


# ---- manifests refused -----------------------------------------------------------------------


def _edit_config(document: dict[str, Any]) -> None:
    document["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json"


def _drop_config(document: dict[str, Any]) -> None:
    del document["config"]


@pytest.mark.parametrize(
    ("edit", "found"),
    [
        (_edit_config, "'application/vnd.oci.image.config.v1+json'"),
        (_drop_config, "'None'"),
    ],
)
def test_a_manifest_without_the_modelpack_config_is_unsupported(
    tmp_path: Path, edit: Any, found: str
) -> None:
    ref = write_layout(tmp_path / "layout", LAYERS[:1], edit)
    with pytest.raises(UnsupportedArtifact) as caught:
        materialize(ref, tmp_path / "model")
    assert caught.value.message == (
        f"{ref}: the config media type is {found}, not application/vnd.cncf.model.config.v1+json:"
        " not a ModelPack artifact; publish it with ai-models prepare or modctl"
    )
    assert not (tmp_path / "model").exists()


def test_an_unknown_layer_media_type_is_unsupported(tmp_path: Path) -> None:
    ref = write_layout(
        tmp_path / "layout", [Layer("model.bin", WEIGHTS, "application/vnd.oci.image.layer.v1.tar")]
    )
    with pytest.raises(
        UnsupportedArtifact, match=r"media type 'application/vnd\.oci\.image\.layer"
    ):
        materialize(ref, tmp_path / "model")


def test_an_oversized_layout_manifest_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    digest = write_layout(layout, LAYERS[:1]).rpartition("@")[2]
    document = json.loads((layout / "blobs/sha256" / digest[7:]).read_bytes())
    document["annotations"] = {"padding": "x" * (5 << 20)}
    ref = write_manifest(layout, json.dumps(document).encode())
    with pytest.raises(InvalidWeights, match=r"is larger than 4,194,304 bytes$"):
        materialize(ref, tmp_path / "model")


def test_a_deeply_nested_manifest_is_refused_without_recursion(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    ref = write_manifest(layout, b'{"a":' * 5000 + b"1" + b"}" * 5000)
    with pytest.raises(InvalidWeights, match=r"the manifest nests deeper than 32 levels$"):
        materialize(ref, tmp_path / "model")


def test_a_hard_link_planted_as_the_partial_is_replaced_not_written_through(
    tmp_path: Path,
) -> None:
    ref = write_layout(tmp_path / "layout", [Layer("model.safetensors", WEIGHTS)])
    victim = tmp_path / "victim"
    victim.write_bytes(WEIGHTS[:100])  # a plausible prefix: it would be resumed and extended
    out = tmp_path / "model"
    (out / PARTIAL_DIR).mkdir(parents=True)
    os.link(victim, out / PARTIAL_DIR / HEX)
    materialize(ref, out)
    assert tree(out) == {"model.safetensors": WEIGHTS}
    assert victim.read_bytes() == WEIGHTS[:100]
    assert victim.stat().st_nlink == 1


def test_a_hard_link_planted_as_the_journal_is_refused(tmp_path: Path) -> None:
    ref = write_layout(tmp_path / "layout", [Layer("model.safetensors", WEIGHTS)])
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM)
    out = tmp_path / "model"
    out.mkdir()
    os.link(victim, out / STATE_FILE)
    with pytest.raises(UnsafeDestination) as caught:
        materialize(ref, out)
    assert caught.value.message.startswith(f"{out}/{STATE_FILE}: is a file with 2 hard links;")
    assert victim.read_bytes() == VICTIM
