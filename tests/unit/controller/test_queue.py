"""The work queue: de-duplication, one worker per key, delayed adds and backoff on a fake clock."""

from __future__ import annotations

import time

import pytest

from controller.queue import ShutDown, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_duplicate_adds_queue_one_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert len(queue) == 2
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_key_in_processing_is_not_handed_out_twice_and_requeued_when_dirty() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")  # an event while a worker holds the key
    assert queue.get(0) is None
    queue.done("a")
    assert queue.get(0) == "a"
    queue.done("a")
    assert queue.get(0) is None


def test_add_after_waits_for_the_clock() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 30)
    assert queue.get(0) is None
    clock.now += 29.9
    assert queue.get(0) is None
    clock.now += 0.1
    assert queue.get(0) == "a"


def test_backoff_doubles_to_the_cap_and_forget_resets() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=10.0, clock=FakeClock())
    assert [queue.retry("a") for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert queue.failures("a") == 6
    queue.forget("a")
    assert queue.retry("a") == 1.0


def test_no_real_time_passes_with_the_fake_clock() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    started = time.monotonic()
    queue.add_after("a", 3600)
    clock.now += 3600
    assert queue.get(1) == "a"
    assert time.monotonic() - started < 0.5


def test_shutdown_stops_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.shutdown()
    with pytest.raises(ShutDown):
        queue.get()


def test_retry_slowly_waits_the_cap_at_once_and_counts_a_failure() -> None:
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=300.0, clock=clock)
    assert queue.retry_slowly("a") == 300.0
    assert queue.failures("a") == 1
    clock.now += 299.9
    assert queue.get(0) is None
    clock.now += 0.1
    assert queue.get(0) == "a"
    assert queue.retry("a") == 2.0  # the backoff goes on from the failures counted


def test_add_after_no_delay_is_an_add() -> None:
    queue: WorkQueue[str] = WorkQueue(clock=FakeClock())
    queue.add_after("a", 0)
    assert queue.get(0) == "a"
