"""The token check: one path, one answer, one digest comparison, whatever is wrong."""

from __future__ import annotations

import hmac

import pytest

from api.upload import new_token, token_sha256
from gateway import auth
from gateway.auth import TokenCheck, tokens_match
from gateway.errors import Refusal
from gateway.ratelimit import AttemptLimiter
from gateway.records import RecordStore
from tests.unit.controller.fakekube import FakeKube
from tests.unit.gateway.records_helpers import SYSTEM, seeded


def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    return seen


@pytest.mark.parametrize(
    "expected",
    [token_sha256("upload-a.right"), None, "zz" * 32, "ab"],
    ids=["wrong token", "no record", "garbage hex", "short digest"],
)
def test_every_comparison_is_compare_digest_of_two_32_byte_digests(
    monkeypatch: pytest.MonkeyPatch, expected: str | None
) -> None:
    seen = comparisons(monkeypatch)
    assert tokens_match("upload-a.wrong", expected) is False
    assert [(len(a), len(b), type(a), type(b)) for a, b in seen] == [(32, 32, bytes, bytes)]


def test_right_token_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = comparisons(monkeypatch)
    assert tokens_match("upload-a.right", token_sha256("upload-a.right")) is True
    assert len(seen) == 1


def check(kube: FakeKube, limit: int = 10) -> TokenCheck:
    return TokenCheck(RecordStore(kube, SYSTEM, clock=kube.clock.monotonic), AttemptLimiter(limit))


def refusal(call: object, *args: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_the_right_token_gets_the_record() -> None:
    kube = FakeKube()
    record, token = seeded(kube)
    assert check(kube).record("upload-u1", f"Bearer {token}") == record


def test_wrong_missing_foreign_and_unknown_look_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube()
    _, token = seeded(kube, "upload-u1")
    _, other = seeded(kube, "upload-u2")
    gate = check(kube)
    seen = comparisons(monkeypatch)
    cases = [
        ("upload-u1", f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}"),
        ("upload-u1", f"Bearer {other}"),
        ("upload-u9", f"Bearer {new_token('upload-u9')}"),
        ("upload-u1", None),
        ("upload-u1", f"Basic {token}"),
    ]
    answers = {(r.code, r.message) for r in (refusal(gate.record, *c) for c in cases)}
    assert len(answers) == 1
    assert next(iter(answers))[0] == "Unauthorized"
    assert len(seen) == 3  # every presented token was compared, the unknown session's too


def test_ten_wrong_tokens_then_429_even_for_the_right_one() -> None:
    kube = FakeKube()
    _, token = seeded(kube)
    gate = check(kube)
    for _ in range(10):
        assert refusal(gate.record, "upload-u1", "Bearer upload-u1.wrong").code == "Unauthorized"
    blocked = refusal(gate.record, "upload-u1", f"Bearer {token}")
    assert (blocked.code, blocked.status) == ("TooManyAttempts", 429)
    assert blocked.headers["Retry-After"] == "60"
    kube.clock.advance(61)
    assert check(kube).record("upload-u1", f"Bearer {token}").session == "upload-u1"


def test_a_missing_token_does_not_count() -> None:
    kube = FakeKube()
    _, token = seeded(kube)
    gate = check(kube, limit=1)
    refusal(gate.record, "upload-u1", None)
    assert gate.record("upload-u1", f"Bearer {token}").session == "upload-u1"


def test_reads_are_cached_for_a_second() -> None:
    kube = FakeKube()
    _, token = seeded(kube)
    gate = check(kube)
    for _ in range(5):
        gate.record("upload-u1", f"Bearer {token}")
        refusal(gate.record, "upload-u7", "Bearer upload-u7.x")
    assert len(kube.calls_of("get")) == 2
    kube.clock.advance(1.0)
    gate.record("upload-u1", f"Bearer {token}")
    assert len(kube.calls_of("get")) == 3
