"""Client tokens (constant-time, re-read) and the brake on bad tokens."""

from __future__ import annotations

from catalog.auth import ClientTokens, FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_known_tokens_pass_and_others_do_not() -> None:
    tokens = ClientTokens(lambda: ["alpha", "beta", ""], ttl=30)
    assert tokens.valid("alpha")
    assert tokens.valid("beta")
    assert not tokens.valid("")
    assert not tokens.valid("alph")


def test_tokens_are_re_read_after_the_ttl() -> None:
    clock = Clock()
    current = ["old"]
    reads: list[int] = []

    def source() -> list[str]:
        reads.append(1)
        return list(current)

    tokens = ClientTokens(source, ttl=30, clock=clock)
    assert tokens.valid("old")
    current[:] = ["new"]
    clock.now += 29
    assert tokens.valid("old")
    assert len(reads) == 1
    clock.now += 1
    assert not tokens.valid("old")
    assert tokens.valid("new")
    assert len(reads) == 2


def test_the_limit_blocks_until_the_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=3, window_seconds=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.fail("10.0.0.1")
        clock.now += 10
    assert limiter.retry_after("10.0.0.1") == 30
    assert limiter.retry_after("10.0.0.2") is None
    clock.now += 30
    assert limiter.retry_after("10.0.0.1") is None


def test_memory_is_bounded_by_the_number_of_clients() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=1, window_seconds=60, clock=clock, max_clients=2)
    for client in ("a", "b", "c"):
        limiter.fail(client)
    assert limiter.retry_after("c") == 60
    assert limiter.retry_after("a") is None
