"""The unpacker's input: zstd frames followed without decompressing; the blob counted, verified."""

from __future__ import annotations

import hashlib

import pytest
import zstandard

from tests.unit.worker.archive_builders import chunks
from worker.archive_streams import RawStream, ZstdFrames
from worker.errors import SourceUnavailable, UploadRejected

SKIPPABLE = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"hello"


def _frames() -> tuple[bytes, set[int]]:
    """Three frames (with and without checksum and content size, one skippable frame between)
    and the offsets at which a frame ends."""
    data = bytes(range(256)) * 2000
    parts = [
        zstandard.ZstdCompressor(write_checksum=True).compress(data),
        SKIPPABLE,
        zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 300_000),
        zstandard.ZstdCompressor(level=1).compress(b""),
    ]
    ends, offset = {0}, 0
    for part in parts:
        offset += len(part)
        ends.add(offset)
    return b"".join(parts), ends


def test_the_stream_is_complete_exactly_at_frame_ends() -> None:
    stream, ends = _frames()
    for cut in range(len(stream) + 1):
        frames = ZstdFrames("up.tar.zst")
        frames.feed(stream[:cut])
        assert frames.complete == (cut in ends), cut


def test_feeding_in_odd_pieces_changes_nothing() -> None:
    stream, _ = _frames()
    frames = ZstdFrames("up.tar.zst")
    for start in range(0, len(stream), 7):
        frames.feed(stream[start : start + 7])
    assert frames.complete


def test_a_stream_that_is_not_zstd_is_rejected() -> None:
    with pytest.raises(UploadRejected) as caught:
        ZstdFrames("up.tar.zst").feed(b"PK\x03\x04rest")
    assert caught.value.message == (
        "up.tar.zst: not a zstd stream (a frame starts with b'PK\\x03\\x04')"
    )


def _raw(data: bytes, size: int, digest: str) -> RawStream:
    return RawStream(chunks(data, 1000), size=size, digest=digest, where="up.tar")


def test_the_raw_stream_counts_and_verifies() -> None:
    data = bytes(range(256)) * 40
    raw = _raw(data, len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    assert raw.read(100) == data[:100]
    assert raw.consumed == 100
    raw.finish()
    assert (raw.consumed, raw.at_end) == (len(data), True)


def test_other_bytes_than_the_digest_names_are_the_registrys_fault() -> None:
    data = b"x" * 5000
    raw = _raw(data, len(data), "sha256:" + "0" * 64)
    with pytest.raises(SourceUnavailable) as caught:
        raw.finish()
    assert caught.value.message == (
        f"up.tar: the registry served 5,000 bytes hashing to sha256:"
        f"{hashlib.sha256(data).hexdigest()}, not the uploaded blob sha256:{'0' * 64} "
        "(5,000 bytes)"
    )


def test_more_bytes_than_the_blob_has_are_refused_as_they_arrive() -> None:
    raw = _raw(b"x" * 5000, 1500, "sha256:" + "0" * 64)
    raw.read(1000)
    with pytest.raises(SourceUnavailable, match="more than the blob's 1,500 bytes"):
        raw.read(1000)
