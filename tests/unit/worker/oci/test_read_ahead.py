"""The reading thread of a download: order, the bound on what it holds, failures in order, and
stopping it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from worker.oci.read_ahead import ReadAhead


class Source:
    """Pieces of ``size`` bytes; records how many were read and whether it was closed."""

    def __init__(self, count: int, size: int = 100, fail_at: int | None = None) -> None:
        self.count, self.size, self.fail_at = count, size, fail_at
        self.read = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        try:
            for index in range(self.count):
                if index == self.fail_at:
                    raise ConnectionResetError("source went away")
                self.read += 1
                yield bytes([index]) * self.size
        finally:
            self.closed.set()


def _eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 5 s"
        time.sleep(0.01)


def test_pieces_come_in_order_and_the_source_is_closed_at_its_end() -> None:
    source = Source(5)
    assert list(ReadAhead(source, 250)) == [bytes([i]) * 100 for i in range(5)]
    assert source.closed.wait(5)


def test_the_thread_holds_no_more_than_the_bound() -> None:
    source = Source(10)
    ahead = ReadAhead(source, 250)
    # Two pieces (200 bytes) wait; a third would pass 250, so the thread holds it in its hand.
    _eventually(lambda: source.read == 3)
    time.sleep(0.05)
    assert source.read == 3
    assert next(ahead) == bytes([0]) * 100
    _eventually(lambda: source.read == 4)
    ahead.close()


def test_a_piece_larger_than_the_bound_still_goes_through() -> None:
    assert list(ReadAhead(Source(3, size=1000), 250)) == [bytes([i]) * 1000 for i in range(3)]


def test_a_failure_comes_after_the_pieces_read_before_it_and_ends_the_iteration() -> None:
    ahead = ReadAhead(Source(5, fail_at=2), 1000)
    assert next(ahead) == bytes([0]) * 100
    assert next(ahead) == bytes([1]) * 100
    with pytest.raises(ConnectionResetError, match="source went away"):
        next(ahead)
    assert list(ahead) == []


def test_close_stops_the_thread_and_closes_the_source() -> None:
    source = Source(1000)
    ahead = ReadAhead(source, 250)
    assert next(ahead) == bytes([0]) * 100
    ahead.close()
    assert source.closed.wait(5)
    assert source.read < 10
    assert list(ahead) == []
