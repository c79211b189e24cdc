"""The OCI image layout: a valid layout, atomic blobs, resumable partial files, the index."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from oci.digest import sha256_digest
from worker.oci.content import ChunkOpener, DigestMismatch
from worker.oci.layout import InvalidLayout, OciLayout

DATA = b"0123456789" * 1000
DIGEST = sha256_digest(DATA)


def _opener(data: bytes = DATA, offsets: list[int] | None = None) -> ChunkOpener:
    def open_chunks(offset: int) -> Iterator[bytes]:
        if offsets is not None:
            offsets.append(offset)
        for start in range(offset, len(data), 3000):
            yield data[start : start + 3000]

    return open_chunks


def test_new_layout_files(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "out", create=True)
    assert json.loads((layout.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert layout.read_index()["manifests"] == []
    with pytest.raises(InvalidLayout, match="not an OCI image layout"):
        OciLayout(tmp_path / "missing", create=False)


@pytest.mark.parametrize("digest", [DIGEST, None])
def test_blob_is_written_verified_and_renamed(tmp_path: Path, digest: str | None) -> None:
    layout = OciLayout(tmp_path, create=True)
    progress: list[int] = []
    assert layout.write_blob(_opener(), len(DATA), digest, progress.append) == DIGEST
    assert layout.blob_path(DIGEST).read_bytes() == DATA
    assert sum(progress) == len(DATA)
    assert [p.name for p in (tmp_path / "blobs" / "sha256").iterdir()] == [DIGEST[7:]]


def test_partial_blob_is_resumed(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path, create=True)
    partial = tmp_path / "blobs" / "sha256" / f".{DIGEST[7:]}.partial"
    partial.write_bytes(DATA[:4000])
    offsets: list[int] = []
    progress: list[int] = []
    layout.write_blob(_opener(offsets=offsets), len(DATA), DIGEST, progress.append)
    assert offsets == [4000]
    assert progress[0] == 4000
    assert sum(progress) == len(DATA)
    assert layout.blob_path(DIGEST).read_bytes() == DATA
    assert not partial.exists()


def test_wrong_content_leaves_no_blob(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path, create=True)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch):
        layout.write_blob(_opener(), len(DATA), wrong, lambda _: None)
    with pytest.raises(DigestMismatch) as raised:
        layout.write_blob(_opener(), len(DATA) - 1, None, lambda _: None)
    assert raised.value.what == "size"
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []


def test_index_keeps_one_entry_per_tag(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path, create=True)
    first = layout.add_manifest(b'{"a":1}', "application/x", "v1", "art/x")
    second = layout.add_manifest(b'{"a":2}', "application/x", "v1", "art/x")
    untagged = layout.add_manifest(b'{"a":3}', "application/x", None, None)
    layout.add_manifest(b'{"a":3}', "application/x", None, None)
    manifests = layout.read_index()["manifests"]
    assert [m["digest"] for m in manifests] == [second, untagged]
    assert manifests[0] == {
        "mediaType": "application/x",
        "digest": second,
        "size": 7,
        "artifactType": "art/x",
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }
    assert layout.resolve_tag("v1") == second
    assert layout.resolve_tag("v2") is None
    assert layout.has_blob(first)  # blobs are never removed by a re-tag


def test_a_second_writer_of_the_same_digest_waits_and_reads_nothing(tmp_path: Path) -> None:
    """Two writers of one digest at once (two files with the same content): the first writes,
    the second waits for it and finds the blob in place. Both used to append to one partial
    file, and the first rename published a file of twice the size under the digest's name."""
    layout = OciLayout(tmp_path, create=True)
    paused, resume = threading.Event(), threading.Event()
    second_offsets: list[int] = []

    def first_chunks(offset: int) -> Iterator[bytes]:
        yield DATA[offset:3000]
        paused.set()
        resume.wait(10)
        yield DATA[3000:]

    results: dict[str, object] = {}

    def write(name: str, opener: ChunkOpener) -> None:
        try:
            results[name] = layout.write_blob(opener, len(DATA), DIGEST, lambda _: None)
        except Exception as error:  # noqa: BLE001 - the test reports it below
            results[name] = error

    first = threading.Thread(target=write, args=("first", first_chunks))
    second = threading.Thread(target=write, args=("second", _opener(offsets=second_offsets)))
    first.start()
    assert paused.wait(10)
    second.start()
    second.join(1.0)  # the second writer is blocked on the first one's lock
    resume.set()
    first.join(10)
    second.join(10)
    assert results == {"first": DIGEST, "second": DIGEST}
    assert second_offsets == []
    assert layout.blob_path(DIGEST).read_bytes() == DATA
    assert [p.name for p in (tmp_path / "blobs" / "sha256").iterdir()] == [DIGEST[7:]]


def test_a_blob_file_of_the_wrong_size_is_not_present_and_is_rewritten(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path, create=True)
    layout.blob_path(DIGEST).write_bytes(DATA + DATA)  # e.g. left by an older, racy writer
    assert layout.has_blob(DIGEST)
    assert not layout.has_blob(DIGEST, len(DATA))
    offsets: list[int] = []
    assert layout.write_blob(_opener(offsets=offsets), len(DATA), DIGEST, lambda _: None) == DIGEST
    assert offsets == [0]
    assert layout.blob_path(DIGEST).read_bytes() == DATA
    assert layout.has_blob(DIGEST, len(DATA))
