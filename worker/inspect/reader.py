"""Random access to the bytes of one file, local or remote, and a buffered cursor over it.

A ``ByteSource`` is the only way the header parsers see bytes. For a remote source every
``read_at`` is one HTTP range request, so the parsers make a few large reads through a
``ByteCursor`` (which keeps a window of the file, 1 MiB by default) instead of one read per
field. Sources count their reads and bytes so tests and benchmarks can assert both.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Protocol

from worker.errors import InvalidWeights

DEFAULT_CHUNK_SIZE = 1 << 20

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class ByteSource(Protocol):
    """Random access to one file's bytes."""

    @property
    def name(self) -> str:
        """The file's name as the user knows it; every error message starts with it."""
        ...

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        ...

    def read_at(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``, or ``InvalidWeights`` (truncated file)."""
        ...


def truncated(name: str, offset: int, length: int, size: int) -> InvalidWeights:
    """The error for a read past the end of the file."""
    return InvalidWeights(
        f"{name}: file is truncated: {length} bytes are needed at offset {offset} but the file "
        f"has {size} bytes; upload or publish the complete file"
    )


class CountingSource:
    """Shared bookkeeping: bounds checks and read counters."""

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self.reads = 0
        """Number of ``read_at`` calls made so far."""
        self.bytes_read = 0
        """Number of bytes returned so far."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise truncated(self._name, offset, length, self._size)

    def _count(self, data: bytes, offset: int, length: int) -> bytes:
        if len(data) != length:
            # The file changed under us (or the server sent less than asked): same as truncated.
            raise truncated(self._name, offset, length, offset + len(data))
        self.reads += 1
        self.bytes_read += length
        return data


class FileByteSource(CountingSource):
    """A local file; its size is taken once, at construction."""

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self._path = Path(path)
        super().__init__(name or self._path.name, self._path.stat().st_size)

    def read_at(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        # Opened per read: reads are few and large, and nothing has to be closed afterwards.
        with self._path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        return self._count(data, offset, length)


class BytesSource(CountingSource):
    """Bytes already in memory (a small file fetched whole, or a test fixture)."""

    def __init__(self, name: str, data: bytes) -> None:
        super().__init__(name, len(data))
        self._data = data

    def read_at(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        return self._count(self._data[offset : offset + length], offset, length)


class Budget:
    """A count shared by the files of one model: what a hostile header may cost, in all.

    Each file's parser spends what it is about to build (tensors, walked array items) *before*
    building it, so past the bound the model fails at once with ``InvalidWeights`` naming the
    file and the bound, instead of after minutes of work and gigabytes of memory.
    """

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self.used = 0

    def check(self, name: str, count: int) -> None:
        """Refuse ``count`` more (an upper bound, known before the work) without spending it."""
        if count > self.limit - self.used:
            earlier = f" (and {self.used} in the files before it)" if self.used else ""
            raise InvalidWeights(
                f"{name}: {count} {self.what}{earlier} exceed the limit of {self.limit} "
                "for one model; real models have far fewer"
            )

    def spend(self, name: str, count: int) -> None:
        self.check(name, count)
        self.used += count


def read_whole(source: ByteSource, limit: int) -> bytes:
    """The whole file in one read, refusing files larger than ``limit`` bytes."""
    if source.size > limit:
        raise InvalidWeights(
            f"{source.name}: file is {source.size} bytes, over the {limit}-byte limit for this "
            "kind of file"
        )
    return source.read_at(0, source.size)


class _DuplicateKeyError(ValueError):
    pass


def _pairs_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)  # called for every object of a header: the common case stays in C
    if len(result) == len(pairs):
        return result
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKeyError(f"duplicate key {key!r}")
        seen.add(key)
    raise AssertionError("unreachable: fewer keys than pairs means a duplicate")


def decode_json(name: str, raw: bytes, *, reject_duplicates: bool = False) -> object:
    """Strict UTF-8 JSON; any failure (including absurd nesting) is ``InvalidWeights``.

    Duplicate keys are rejected only where two readers could disagree on which value counts
    (a safetensors header); config files keep Python's and transformers' "last one wins".
    """
    hook = _pairs_without_duplicates if reject_duplicates else None
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=hook)
    except UnicodeDecodeError as exc:
        raise InvalidWeights(f"{name}: not valid UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidWeights(f"{name}: not valid JSON: {exc.msg} at byte {exc.pos}") from exc
    except RecursionError as exc:
        raise InvalidWeights(f"{name}: JSON nested too deeply") from exc
    except ValueError as exc:  # duplicate keys, integers longer than Python's digit limit
        raise InvalidWeights(f"{name}: invalid JSON: {exc}") from exc


def read_json_object(source: ByteSource, limit: int) -> dict[str, object]:
    """A small JSON file (at most ``limit`` bytes) whose top level must be an object."""
    document = decode_json(source.name, read_whole(source, limit))
    if not isinstance(document, dict):
        raise InvalidWeights(
            f"{source.name}: expected a JSON object at the top level, got {type(document).__name__}"
        )
    return document


class ByteCursor:
    """Sequential reads over a ``ByteSource`` through a window of ``chunk_size`` bytes.

    Skipping moves the position without reading, so data the parser does not need (fixed-size
    arrays) costs nothing; only the parts actually decoded are fetched. With a ``limit`` (a
    header's cap), no read goes past that offset: a header that declares more is refused before
    those bytes are fetched or kept, however large the file.
    """

    def __init__(
        self,
        source: ByteSource,
        *,
        start: int = 0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        limit: int | None = None,
    ) -> None:
        self._source = source
        self._chunk_size = chunk_size
        self._limit = limit
        self._window = b""
        self._window_start = 0
        self.position = start

    @property
    def source(self) -> ByteSource:
        return self._source

    @property
    def size(self) -> int:
        return self._source.size

    def _ensure(self, length: int) -> int:
        """Index in the window of ``position``, after making ``length`` bytes available."""
        relative = self.position - self._window_start
        if relative >= 0 and relative + length <= len(self._window):
            return relative
        size = self._source.size
        if self.position + length > size:
            raise truncated(self._source.name, self.position, length, size)
        if self._limit is not None and self.position + length > self._limit:
            raise InvalidWeights(
                f"{self._source.name}: header exceeds the {self._limit}-byte limit: "
                f"{length} bytes are needed at offset {self.position}"
            )
        end = size if self._limit is None else min(size, self._limit)
        fetch = min(max(length, self._chunk_size), end - self.position)
        self._window = self._source.read_at(self.position, fetch)
        self._window_start = self.position
        return 0

    def take(self, length: int) -> bytes:
        index = self._ensure(length)
        self.position += length
        return self._window[index : index + length]

    def unpack(self, fmt: struct.Struct) -> tuple[object, ...]:
        index = self._ensure(fmt.size)
        self.position += fmt.size
        return fmt.unpack_from(self._window, index)

    def u32(self) -> int:
        index = self._ensure(4)
        self.position += 4
        value: int = _U32.unpack_from(self._window, index)[0]
        return value

    def u64(self) -> int:
        index = self._ensure(8)
        self.position += 8
        value: int = _U64.unpack_from(self._window, index)[0]
        return value

    def skip(self, length: int) -> None:
        if self.position + length > self._source.size:
            raise truncated(self._source.name, self.position, length, self._source.size)
        self.position += length

    def skip_prefixed(self, count: int, max_item_length: int, what: str) -> None:
        """Skip ``count`` items, each a u64 little-endian length followed by that many bytes.

        The hot loop of a 150k-entry vocabulary: it walks the window directly instead of
        calling ``u64``/``skip`` per item, and refills only when an item crosses its end.
        """
        remaining, length = count, 0
        unpack_length = _U64.unpack_from
        while remaining:
            index = self._ensure(8)
            window, base, last = self._window, self._window_start, len(self._window) - 8
            while remaining and index <= last:
                (length,) = unpack_length(window, index)
                if length > max_item_length:
                    raise InvalidWeights(
                        f"{self._source.name}: {what}: an item of {length} bytes at offset "
                        f"{base + index} exceeds the {max_item_length}-byte limit"
                    )
                index += 8 + length
                remaining -= 1
            self.position = base + index
            if self.position > self._source.size:
                raise truncated(self._source.name, base + index - length, length, self.size)
