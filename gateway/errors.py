"""The gateway's answers other than success: each a ``Refusal`` carrying one of the protocol's
error codes (``api.upload.ErrorCode``); its HTTP status comes from ``api.upload.ERROR_STATUS``,
so the table lives in one place. Every error body is ``api.upload.ErrorBody`` as JSON.

    Refusal                 code, message, extra headers (``Retry-After``, ``Upload-Offset``)
    └── ClientGone          the client's connection broke mid-body: nothing to answer
"""

from __future__ import annotations

from api.upload import ERROR_STATUS, ErrorBody, ErrorCode

UNAUTHORIZED_MESSAGE = "a valid upload token is required (Authorization: Bearer <token>)"
"""One message for a missing token, a wrong one and another session's: they look the same."""


class Refusal(Exception):  # noqa: N818 - an HTTP answer, not a crash
    def __init__(self, code: ErrorCode, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def body(self) -> bytes:
        return ErrorBody(code=self.code, message=self.message).model_dump_json().encode()


class ClientGone(Exception):  # noqa: N818 - what happened
    """The client stopped sending before its body was complete (connection closed, timeout)."""


def unauthorized() -> Refusal:
    return Refusal("Unauthorized", UNAUTHORIZED_MESSAGE)


def bad_request(message: str) -> Refusal:
    return Refusal("BadRequest", message)
