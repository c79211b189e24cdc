"""A ``ByteSource`` over a remote file: every ``read_at`` is one ranged request.

The providers (Hub, Ollama registry) hand this class a fetch function that performs one range
request; it adds the bounds checks the header parsers rely on and counts reads and bytes, so
tests and benchmarks can assert how little of a weight file inspection transferred.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.inspect.reader import truncated

RangeFetch = Callable[[int, int], bytes]
"""``fetch(offset, length)``: exactly ``length`` bytes at ``offset`` (one request)."""


class RangedByteSource:
    def __init__(self, name: str, size: int, fetch: RangeFetch) -> None:
        self._name = name
        self._size = size
        self._fetch = fetch
        self.reads = 0
        """Number of ``read_at`` calls that reached the network."""
        self.bytes_read = 0
        """Bytes returned by those calls."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise truncated(self._name, offset, length, self._size)
        if length == 0:
            return b""  # "bytes=N-(N-1)" is not a valid range; nothing to ask for
        data = self._fetch(offset, length)
        if len(data) != length:
            # The server's file is shorter than the listing said: the same as a truncated file.
            raise truncated(self._name, offset, length, offset + len(data))
        self.reads += 1
        self.bytes_read += length
        return data
