"""The bearer token → the session's record, doing the same work whatever is wrong.

The token names its session (``<session>.<random>``); the record stores only ``sha256(token)``.
``tokens_match`` always compares two 32-byte digests with ``hmac.compare_digest`` — against a
fixed dummy digest when the session has no record — so a wrong first byte, a wrong last byte,
an unknown session and another session's token take the same path and the same time, and all
four get the same 401. The digest of the presented token (not the token) is compared: its
bytes bear no relation to the token's, so even a comparison that stopped early would tell a
guesser nothing about the token. Wrong tokens count against the session in ``ratelimit``.
"""

from __future__ import annotations

import hashlib
import hmac

from api.upload import SessionRecord, session_of_token
from gateway.errors import Refusal, unauthorized
from gateway.ratelimit import AttemptLimiter
from gateway.records import RecordStore
from gateway.wire import bearer_token

_DUMMY_SHA256 = hashlib.sha256(b"ai-models upload gateway: a session without a record").digest()


def tokens_match(token: str, expected_sha256: str | None) -> bool:
    """``sha256(token)`` equals the stored hex digest; constant time over 32-byte digests."""
    presented = hashlib.sha256(token.encode()).digest()
    expected = _DUMMY_SHA256
    if expected_sha256 is not None and len(expected_sha256) == 64:
        try:
            expected = bytes.fromhex(expected_sha256)
        except ValueError:
            expected = _DUMMY_SHA256
    return hmac.compare_digest(presented, expected) and expected_sha256 is not None


class TokenCheck:
    def __init__(self, store: RecordStore, limiter: AttemptLimiter) -> None:
        self._store = store
        self._limiter = limiter

    def record(self, session: str, authorization: str | None) -> SessionRecord:
        """The record of ``session`` when ``authorization`` carries its token; else a refusal
        (401 ``Unauthorized``, 429 ``TooManyAttempts``)."""
        retry = self._limiter.retry_after(session)
        if retry is not None:
            raise Refusal(
                "TooManyAttempts",
                f"too many wrong tokens for this session; try again in {retry} s",
                {"Retry-After": str(retry)},
            )
        token = bearer_token(authorization)
        if token is None:
            raise unauthorized()
        record = self._store.read(session)
        expected = record.token_sha256 if record is not None else None
        matches = tokens_match(token, expected)
        if not matches or record is None or session_of_token(token) != session:
            self._limiter.failed(session)
            raise unauthorized()
        return record
