"""The input side of the upload unpacker: the archive's bytes as a counted, hashed stream.

``RawStream`` turns the registry's chunks into the ``read(n)`` that ``gzip`` and ``zstandard``
want, counting every byte it hands out (the unpacker measures its expansion ratio against it),
hashing them (the blob is verified against its digest once it was read to the end) and refusing
more than the blob's size. ``decompressing`` stacks the decompressor of the archive's kind on it.

A truncated gzip stream raises ``EOFError`` in ``gzip``; a truncated zstd stream does not:
``zstandard``'s stream reader returns end-of-file wherever its input ends, even inside a frame.
So ``ZstdFrames`` follows the frame layout (RFC 8878: frame header, block headers, checksum,
skippable frames) over the compressed bytes as they pass, without decompressing anything, and
says whether the input ended between two frames.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from typing import Any, Literal, cast

import zstandard

from worker.errors import SourceUnavailable, UploadRejected
from worker.oci.tar_layer import Readable

TarKind = Literal["tar", "tar.gz", "tar.zst"]
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SKIPPABLE_MAGIC_TAIL = b"\x2a\x4d\x18"  # 0x184D2A5?, little-endian: ?5 2A 4D 18
_DICTIONARY_ID_BYTES = (0, 1, 2, 4)
_CONTENT_SIZE_BYTES = (0, 2, 4, 8)
_RESERVED_BLOCK = 3
_RLE_BLOCK = 1


class ZstdFrames:
    """Follows zstd frames over compressed bytes: ``feed`` them in order, then ask ``complete``."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._state = "magic"
        self._need = 4
        self._buffer = b""
        self._skip = 0
        self._checksum = False
        self._last = False

    @property
    def complete(self) -> bool:
        """True when the bytes fed so far end exactly between two frames."""
        return self._state == "magic" and not self._buffer and not self._skip

    def feed(self, data: bytes) -> None:
        position = 0
        while position < len(data):
            if self._skip:
                taken = min(self._skip, len(data) - position)
                self._skip -= taken
                position += taken
                continue
            taken = min(self._need - len(self._buffer), len(data) - position)
            self._buffer += data[position : position + taken]
            position += taken
            if len(self._buffer) == self._need:
                header, self._buffer = self._buffer, b""
                self._parse(header)

    def _expect(self, state: str, need: int) -> None:
        self._state, self._need = state, need

    def _parse(self, header: bytes) -> None:
        if self._state == "magic":
            self._magic(header)
        elif self._state == "skippable":
            self._skip_then(int.from_bytes(header, "little"), "magic", 4)
        elif self._state == "descriptor":
            self._descriptor(header[0])
        elif self._state == "header":
            self._expect("block", 3)
        elif self._state == "block":
            self._block(int.from_bytes(header, "little"))
        else:  # the content checksum after the last block
            self._expect("magic", 4)

    def _magic(self, header: bytes) -> None:
        if header == _ZSTD_MAGIC:
            self._expect("descriptor", 1)
        elif header[1:] == _SKIPPABLE_MAGIC_TAIL and header[0] & 0xF0 == 0x50:
            self._expect("skippable", 4)
        else:
            raise UploadRejected(
                f"{self._where}: not a zstd stream (a frame starts with {header!r})"
            )

    def _descriptor(self, descriptor: int) -> None:
        single_segment = bool(descriptor & 0x20)
        size_flag = descriptor >> 6
        size_bytes = _CONTENT_SIZE_BYTES[size_flag] or (1 if single_segment else 0)
        rest = (0 if single_segment else 1) + _DICTIONARY_ID_BYTES[descriptor & 3] + size_bytes
        self._checksum = bool(descriptor & 0x04)
        if rest:
            self._expect("header", rest)
        else:
            self._expect("block", 3)

    def _block(self, header: int) -> None:
        self._last = bool(header & 1)
        kind, size = (header >> 1) & 3, header >> 3
        if kind == _RESERVED_BLOCK:
            raise UploadRejected(f"{self._where}: a zstd block of the reserved type")
        after = ("checksum", 4) if self._checksum else ("magic", 4)
        state, need = after if self._last else ("block", 3)
        self._skip_then(1 if kind == _RLE_BLOCK else size, state, need)

    def _skip_then(self, count: int, state: str, need: int) -> None:
        self._expect(state, need)  # entered once ``count`` bytes have passed
        self._skip = count


class RawStream:
    """The blob's bytes from ``chunks`` as ``read(n)``: counted, hashed, at most ``size``."""

    def __init__(
        self, chunks: Iterator[bytes], *, size: int, digest: str, where: str, zstd: bool = False
    ) -> None:
        self._chunks = chunks
        self._size = size
        self._digest = digest
        self._where = where
        self._hash = hashlib.sha256()
        self._pending = b""
        self._offset = 0
        """Where the next read starts in ``_pending``: a chunk is never re-sliced (gzip reads
        8 KiB at a time; copying the rest of an 8 MiB chunk each time cost minutes)."""
        self._ended = False
        self.consumed = 0
        """Bytes handed out so far: the compressed input the unpacker has used."""
        self.frames = ZstdFrames(where) if zstd else None

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            size = 1 << 20
        while self._offset >= len(self._pending) and not self._ended:
            try:
                self._pending, self._offset = next(self._chunks), 0
            except StopIteration:
                self._ended = True
        piece = self._pending[self._offset : self._offset + size]
        self._offset += len(piece)
        self._account(piece)
        return piece

    def _account(self, piece: bytes) -> None:
        self.consumed += len(piece)
        if self.consumed > self._size:
            raise SourceUnavailable(
                f"{self._where}: the registry served more than the blob's {self._size:,} bytes"
            )
        self._hash.update(piece)
        if self.frames is not None:
            self.frames.feed(piece)

    @property
    def at_end(self) -> bool:
        return self._ended and self._offset >= len(self._pending)

    def finish(self) -> None:
        """Reads what is left and checks the whole blob against its size and digest."""
        while self.read(1 << 20):
            pass
        actual = "sha256:" + self._hash.hexdigest()
        if self.consumed != self._size or actual != self._digest:
            raise SourceUnavailable(
                f"{self._where}: the registry served {self.consumed:,} bytes hashing to "
                f"{actual}, not the uploaded blob {self._digest} ({self._size:,} bytes)"
            )


def decompressing(raw: RawStream, kind: TarKind) -> Readable:
    """The tar stream inside ``raw``."""
    if kind == "tar.gz":
        # Both need only ``read(n)`` of their input; their stubs ask for a whole file object.
        return gzip.GzipFile(fileobj=cast(Any, raw), mode="rb")
    if kind == "tar.zst":
        return zstandard.ZstdDecompressor().stream_reader(cast(Any, raw), read_across_frames=True)
    return raw
