"""Grant tokens: signed, scoped, expiring."""

from __future__ import annotations

import base64
import json

import pytest

from catalog.grants import ExpiredGrant, GrantSigner, InvalidGrant

KEY = b"k" * 32
DIGEST = "sha256:" + "c" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_grant_verifies_with_its_scope_and_expiry() -> None:
    clock = Clock()
    signer = GrantSigner(KEY, 600, clock)
    token, claims = signer.issue("ai-models/clustermodel/a", DIGEST)
    verified = signer.verify(token)
    assert verified == claims
    assert (verified.repository, verified.digest, verified.expires) == (
        "ai-models/clustermodel/a", DIGEST, 1_000_600,
    )  # fmt: skip
    assert verified.expires_at.isoformat() == "1970-01-12T13:56:40+00:00"


def test_a_grant_expires_after_its_ttl() -> None:
    clock = Clock()
    signer = GrantSigner(KEY, 600, clock)
    token, _ = signer.issue("r", DIGEST)
    clock.now += 599
    signer.verify(token)
    clock.now += 1
    with pytest.raises(ExpiredGrant):
        signer.verify(token)


def test_another_key_does_not_verify() -> None:
    token, _ = GrantSigner(KEY, 600).issue("r", DIGEST)
    with pytest.raises(InvalidGrant) as caught:
        GrantSigner(b"x" * 32, 600).verify(token)
    assert type(caught.value) is InvalidGrant


def test_a_changed_scope_breaks_the_signature() -> None:
    signer = GrantSigner(KEY, 600)
    token, _ = signer.issue("r", DIGEST)
    prefix, payload, mac = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["r"] = "other"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    with pytest.raises(InvalidGrant, match="signature"):
        signer.verify(f"{prefix}.{forged}.{mac}")


@pytest.mark.parametrize("token", ["", "g1.x", "g2.a.b", "g1.a.b.c", "g1.a.!!", "g1." + "a" * 5000])
def test_malformed_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidGrant):
        GrantSigner(KEY, 600).verify(token)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        GrantSigner(b"short", 600)
