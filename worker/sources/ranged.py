"""A ``ByteSource`` over a remote file: every ``read_at`` is one ranged request.

The providers (Hub, Ollama registry) hand this class a fetch function that performs one range
request; it adds the bounds checks the header parsers rely on and counts reads and bytes, so
tests and benchmarks can assert how little of a weight file inspection transferred.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.inspect.reader import CountingSource

RangeFetch = Callable[[int, int], bytes]
"""``fetch(offset, length)``: exactly ``length`` bytes at ``offset`` (one request)."""


class RangedByteSource(CountingSource):
    def __init__(self, name: str, size: int, fetch: RangeFetch) -> None:
        super().__init__(name, size)
        self._fetch = fetch

    def read_at(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        if length == 0:
            return b""  # "bytes=N-(N-1)" is not a valid range; nothing to ask for
        return self._count(self._fetch(offset, length), offset, length)
