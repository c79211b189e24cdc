"""ByteSource implementations, the buffered cursor and the bounded JSON helpers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from worker.errors import InvalidWeights
from worker.inspect.reader import (
    ByteCursor,
    BytesSource,
    FileByteSource,
    decode_json,
    read_json_object,
    read_whole,
)


def test_file_source_reads_exact_ranges_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(100)))
    source = FileByteSource(path)
    assert (source.name, source.size) == ("weights.bin", 100)
    assert source.read_at(10, 5) == bytes([10, 11, 12, 13, 14])
    assert source.read_at(95, 5) == bytes([95, 96, 97, 98, 99])
    assert (source.reads, source.bytes_read) == (2, 10)


@pytest.mark.parametrize(("offset", "length"), [(96, 5), (-1, 2), (0, 101), (200, 0)])
def test_read_outside_the_file_is_truncated(tmp_path: Path, offset: int, length: int) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(100))
    source = FileByteSource(path, name="org/repo/weights.bin")
    with pytest.raises(InvalidWeights, match=r"^org/repo/weights\.bin: file is truncated"):
        source.read_at(offset, length)
    assert source.reads == 0


def test_file_that_shrinks_after_opening_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(100))
    source = FileByteSource(path)
    path.write_bytes(bytes(50))
    with pytest.raises(InvalidWeights, match=r"weights\.bin: file is truncated"):
        source.read_at(40, 20)


def test_cursor_reads_through_a_window() -> None:
    source = BytesSource("f", bytes(range(10)))
    cursor = ByteCursor(source, chunk_size=4)
    assert [cursor.take(2) for _ in range(5)] == [bytes([i, i + 1]) for i in range(0, 10, 2)]
    # Windows [0,4) [4,8) [8,10): five takes, three reads.
    assert (source.reads, source.bytes_read) == (3, 10)


def test_cursor_take_larger_than_the_window_reads_once() -> None:
    source = BytesSource("f", bytes(range(10)))
    cursor = ByteCursor(source, chunk_size=2)
    assert cursor.take(7) == bytes(range(7))
    assert (source.reads, cursor.position) == (1, 7)


def test_cursor_skip_reads_nothing_and_checks_the_end() -> None:
    source = BytesSource("f.gguf", struct.pack("<IQ", 7, 9) + bytes(100))
    cursor = ByteCursor(source, chunk_size=4)
    cursor.skip(4)
    assert cursor.u64() == 9
    cursor.skip(100)
    assert cursor.position == source.size
    assert source.reads == 1
    with pytest.raises(InvalidWeights, match=r"^f\.gguf: file is truncated"):
        cursor.skip(1)


def _prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<Q", len(item)) + item for item in items)


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 9, 13, 64, 1 << 20])
def test_skip_prefixed_crosses_window_boundaries(chunk_size: int) -> None:
    items = [b"", b"a", b"hello", b"x" * 30, b"", b"tail"]
    data = _prefixed(*items) + b"END"
    cursor = ByteCursor(BytesSource("f", data), chunk_size=chunk_size)
    cursor.skip_prefixed(len(items), 100, "tokens")
    assert cursor.take(3) == b"END"


def test_skip_prefixed_rejects_an_item_over_the_limit() -> None:
    cursor = ByteCursor(BytesSource("vocab.gguf", _prefixed(b"ab", b"x" * 11)))
    with pytest.raises(InvalidWeights, match=r"^vocab\.gguf: tokens: an item of 11 bytes"):
        cursor.skip_prefixed(2, 10, "tokens")


def test_skip_prefixed_rejects_an_item_past_the_end() -> None:
    data = _prefixed(b"ab") + struct.pack("<Q", 50) + b"short"
    cursor = ByteCursor(BytesSource("vocab.gguf", data))
    with pytest.raises(InvalidWeights, match=r"^vocab\.gguf: file is truncated"):
        cursor.skip_prefixed(2, 100, "tokens")


def test_read_whole_refuses_files_over_the_limit_without_reading() -> None:
    source = BytesSource("config.json", b"{}" + b" " * 100)
    with pytest.raises(InvalidWeights, match=r"^config\.json: file is 102 bytes, over the 101"):
        read_whole(source, 101)
    assert source.reads == 0
    assert read_whole(source, 102) == b"{}" + b" " * 100


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff{}", "not valid UTF-8 at byte 0"),
        (b'{"a": ', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", "invalid JSON"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
    ],
)
def test_decode_json_failures_name_the_file(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidWeights, match=rf"^hdr\.json: .*{message}"):
        decode_json("hdr.json", raw, reject_duplicates=True)


def test_decode_json_keeps_the_last_duplicate_unless_told() -> None:
    assert decode_json("config.json", b'{"a": 1, "a": 2}') == {"a": 2}


def test_read_json_object_requires_an_object() -> None:
    with pytest.raises(InvalidWeights, match=r"^config\.json: expected a JSON object .* list"):
        read_json_object(BytesSource("config.json", b"[1]"), 100)
