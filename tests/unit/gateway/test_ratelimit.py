"""Wrong tokens per session per minute, on a fake clock."""

from __future__ import annotations

from gateway.ratelimit import AttemptLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_tenth_failure_blocks_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = AttemptLimiter(limit=10, window=60.0, clock=clock)
    for _ in range(9):
        limiter.failed("upload-a")
        clock.t += 1.0
    assert limiter.retry_after("upload-a") is None
    limiter.failed("upload-a")
    assert limiter.retry_after("upload-a") == 51  # first failure at 100, now 109
    assert limiter.retry_after("upload-b") is None
    clock.t = 160.0
    assert limiter.retry_after("upload-a") is None


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    limiter = AttemptLimiter(limit=3, window=10.0, clock=clock)
    for _ in range(10):
        limiter.failed("s")
        clock.t += 6.0
    assert limiter.retry_after("s") is None


def test_the_table_is_bounded() -> None:
    clock = Clock()
    limiter = AttemptLimiter(limit=1, window=60.0, clock=clock, max_keys=3)
    for key in ("a", "b", "c", "d"):
        limiter.failed(key)
    assert limiter.retry_after("a") is None  # dropped, the oldest
    assert limiter.retry_after("d") == 60
