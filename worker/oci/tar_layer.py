"""Reads a tar layer (``…v1.tar``, ``+gzip``, ``+zstd``) as untrusted input, one entry at a time.

ModelPack allows tar layers beside raw ones, and ``modctl`` writes them (one file per layer,
named by its path relative to the model root). ``tarfile`` would read a PAX header of any
declared size into memory and happily yield links and devices, so the few header forms that
matter are parsed here, every length bounded before use: ustar/GNU headers with their checksum,
PAX ``path``/``size`` records (PAX headers ≤ 64 KiB), GNU long names (≤ 4 KiB). Only regular
files and directories come out; a symlink, hardlink, device or FIFO is ``InvalidWeights`` (or
the caller's error class: the upload unpacker, ``worker/archive.py``, passes its own) naming the
member. The file bytes of all members together are held to ``max_bytes`` (the blob's size for a
plain tar, a decompression-bomb guard for a compressed one) before a byte of them is read.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol

import zstandard

from worker.errors import InvalidWeights, WorkerError
from worker.oci.manifest_reader import MAX_PATH_LENGTH

BLOCK = 512
MAX_MEMBERS = 100_000
MAX_PAX_BYTES = 64 << 10
MAX_EXPANSION = 1024
"""A compressed layer may unpack to at most this many times its size (and at least 1 GiB)."""
MIN_EXPANSION_BUDGET = 1 << 30
_FILE_TYPES = frozenset({b"0", b"\x00", b"7"})
_REFUSED_TYPES = {b"1": "a hardlink", b"2": "a symlink", b"3": "a character device",
                  b"4": "a block device", b"6": "a FIFO"}  # fmt: skip
_PIECE = 1 << 20
_DECODE_ERRORS = (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError)

Compression = Literal["", "gzip", "zstd"]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class TarEntry:
    name: str
    kind: Literal["file", "dir"]
    size: int


def decompressed(file: BinaryIO, compression: Compression) -> Readable:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=file, mode="rb")
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(file, read_across_frames=True)
    return file


def expansion_budget(blob_size: int, compression: Compression) -> int:
    if not compression:
        return blob_size
    return max(MIN_EXPANSION_BUDGET, blob_size * MAX_EXPANSION)


class TarReader:
    """``entries()`` yields each member; a file's bytes must be read with ``data()`` before
    the next entry is asked for. ``error`` is the class of every refusal (the upload unpacker
    passes its own), ``what`` names the input in messages ("layer", "archive")."""

    def __init__(
        self,
        stream: Readable,
        max_bytes: int,
        where: str,
        *,
        error: Callable[[str], WorkerError] = InvalidWeights,
        what: str = "layer",
    ) -> None:
        self._stream = stream
        self._left = max_bytes
        self._where = where
        self._error = error
        self._what = what
        self._pending = 0
        self.ended = False
        """True once the end-of-archive marker (a zero block) was read, not just the end of
        the stream: a stream cut at a block boundary looks complete otherwise."""

    def _fail(self, problem: str) -> WorkerError:
        return self._error(f"{self._where}: {problem}; refusing to unpack it")

    def _read_exactly(self, size: int) -> bytes:
        parts, wanted = [], size
        while wanted:
            try:
                piece = self._stream.read(min(wanted, _PIECE))
            except _DECODE_ERRORS as error:
                raise self._fail(f"the {self._what} does not decompress ({error})") from None
            if not piece:
                raise self._fail("the tar stream ends in the middle of an entry")
            parts.append(piece)
            wanted -= len(piece)
        return b"".join(parts)

    def _skip_padding(self, size: int) -> None:
        self._read_exactly(-size % BLOCK)

    def data(self) -> Iterator[bytes]:
        size, self._pending = self._pending, 0
        left = size
        while left:
            piece = self._read_exactly(min(left, _PIECE))
            left -= len(piece)
            yield piece
        self._skip_padding(size)

    def _first_block(self) -> bytes | None:
        try:
            block = self._stream.read(BLOCK)
        except _DECODE_ERRORS as error:
            raise self._fail(f"the {self._what} does not decompress ({error})") from None
        if not block:
            return None  # EOF at a block boundary: treated like the end-of-archive marker
        if len(block) < BLOCK:
            block += self._read_exactly(BLOCK - len(block))
        if block == bytes(BLOCK):
            self.ended = True
            return None
        return block

    def entries(self) -> Iterator[TarEntry]:
        count = 0
        overrides: dict[str, str] = {}
        while (block := self._first_block()) is not None:
            self._check_checksum(block)
            kind, size = block[156:157], self._size(block[124:136])
            if kind in (b"x", b"g", b"L", b"K"):
                self._extension(kind, size, overrides)
                continue
            count += 1
            if count > MAX_MEMBERS:
                raise self._fail(f"more than {MAX_MEMBERS} members")
            name = overrides.pop("path", None) or self._text(_ustar_name(block))
            size = int(overrides.pop("size", size))
            overrides.clear()
            if kind in _REFUSED_TYPES:
                raise self._fail(f"member {name!r} is {_REFUSED_TYPES[kind]}")
            if kind == b"5":
                yield TarEntry(name, "dir", 0)
                self._skip_data(size)
                continue
            if kind not in _FILE_TYPES:
                raise self._fail(f"member {name!r} has the unsupported tar type {kind!r}")
            if size > self._left:
                raise self._fail(
                    f"member {name!r} declares {size:,} bytes, more than the {self._what} may "
                    "unpack to"
                )
            self._left -= size
            self._pending = size
            yield TarEntry(name, "file", size)
            if self._pending:
                raise RuntimeError("TarReader.data() was not consumed")  # a caller's bug

    def _skip_data(self, size: int) -> None:
        if size > MAX_PAX_BYTES:
            raise self._fail(f"a tar header carries {size:,} bytes of data")
        self._read_exactly(size)
        self._skip_padding(size)

    def _extension(self, kind: bytes, size: int, overrides: dict[str, str]) -> None:
        limit = MAX_PATH_LENGTH + 1 if kind in (b"L", b"K") else MAX_PAX_BYTES
        if size > limit:
            raise self._fail(f"a tar extension header declares {size:,} bytes")
        data = self._read_exactly(size)
        self._skip_padding(size)
        if kind == b"L":
            overrides["path"] = self._text(data.split(b"\x00", 1)[0])
        elif kind == b"x":
            overrides.update(self._pax_records(data))

    def _pax_records(self, data: bytes) -> dict[str, str]:
        found: dict[str, str] = {}
        while data:
            length_text, space, _ = data.partition(b" ")
            if not space or not length_text.isdigit() or len(length_text) > 6:
                raise self._fail("a PAX header is malformed")
            length = int(length_text)
            record, data = data[:length], data[length:]
            if length <= len(length_text) + 1 or not record.endswith(b"\n"):
                raise self._fail("a PAX record is malformed")
            key, equals, value = record[len(length_text) + 1 : -1].partition(b"=")
            if not equals:
                raise self._fail("a PAX record has no '='")
            if key == b"path":
                found["path"] = self._text(value)
            elif key == b"size":
                if not value.isdigit() or len(value) > 20:
                    raise self._fail("a PAX size is not a number")
                found["size"] = value.decode()
        return found

    def _text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error(f"{self._where}: a tar member name is not UTF-8") from None

    def _check_checksum(self, block: bytes) -> None:
        stored = _octal(block[148:156])
        actual = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
        if stored is None or stored != actual:
            raise self._fail("a tar header has a wrong checksum (not a tar stream?)")

    def _size(self, field: bytes) -> int:
        if field[:1] and field[0] & 0x80:  # GNU base-256: only ever used beyond 8 GiB
            if field[0] != 0x80:
                raise self._fail("a tar header has a negative size")
            return int.from_bytes(field[1:], "big")
        octal = _octal(field)
        if octal is None:
            raise self._fail("a tar header has a malformed size")
        return octal


def _octal(field: bytes) -> int | None:
    text = field.replace(b"\x00", b" ").strip()
    if not text:
        return 0
    if not all(0x30 <= c <= 0x37 for c in text):
        return None
    return int(text, 8)


def _ustar_name(block: bytes) -> bytes:
    name = block[0:100].split(b"\x00", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\x00", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name
