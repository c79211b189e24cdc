"""Grant tokens: short-lived, read-only, scoped to one repository and one manifest digest.

``g1.<base64url payload>.<base64url HMAC-SHA256>``, the payload ``{"r": repository, "d":
digest, "e": expiry (unix seconds)}``. The key comes from a Secret so that every replica
verifies what any replica issued. The blobs a grant opens are those its manifest lists; the
server checks that against the manifest itself, so the token stays small.

Verification is constant-time in the MAC; an expired token is told apart from a forged one only
after the MAC holds (the importer renews on ``ExpiredGrant``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from api.catalog_protocol import MAX_TOKEN_LENGTH

PREFIX = "g1"
MIN_KEY_BYTES = 32
_DOMAIN = b"ai-models catalog grant v1\x00"


class InvalidGrant(ValueError):  # noqa: N818 - answered as the 401 invalid_token
    """Not a grant this server's key signed."""


class ExpiredGrant(InvalidGrant):
    """A genuine grant past its expiry."""


@dataclass(frozen=True)
class GrantClaims:
    repository: str
    digest: str
    expires: int
    """Unix seconds."""

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GrantSigner:
    def __init__(
        self, key: bytes, ttl_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the grant key must have at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self._ttl = ttl_seconds
        self._clock = clock

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, _DOMAIN + payload.encode(), hashlib.sha256).digest()

    def issue(self, repository: str, digest: str) -> tuple[str, GrantClaims]:
        claims = GrantClaims(repository, digest, int(self._clock()) + self._ttl)
        body = {"r": claims.repository, "d": claims.digest, "e": claims.expires}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{PREFIX}.{payload}.{_b64(self._mac(payload))}", claims

    def verify(self, token: str) -> GrantClaims:
        """The claims; ``InvalidGrant`` when forged or malformed, ``ExpiredGrant`` when late."""
        parts = token.split(".")
        if len(token) > MAX_TOKEN_LENGTH or len(parts) != 3 or parts[0] != PREFIX:
            raise InvalidGrant("not a grant token")
        try:
            mac = _unb64(parts[2])
        except (binascii.Error, ValueError) as error:
            raise InvalidGrant("not a grant token") from error
        if not hmac.compare_digest(mac, self._mac(parts[1])):
            raise InvalidGrant("the grant's signature does not hold")
        claims = _claims(parts[1])
        if self._clock() >= claims.expires:
            raise ExpiredGrant("the grant expired")
        return claims


def _claims(payload: str) -> GrantClaims:
    try:
        body = json.loads(_unb64(payload))
    except (binascii.Error, ValueError) as error:
        raise InvalidGrant("not a grant token") from error
    if not isinstance(body, dict) or set(body) != {"r", "d", "e"}:
        raise InvalidGrant("not a grant token")
    repository, digest, expires = body["r"], body["d"], body["e"]
    if not isinstance(repository, str) or not isinstance(digest, str) or type(expires) is not int:
        raise InvalidGrant("not a grant token")
    return GrantClaims(repository, digest, expires)
