"""How the server answers: the typed refusal every route raises, and the two error shapes.

``/v1/…`` errors are ``ErrorBody`` JSON (``{"code", "message"}``); the registry read API under
``/v2/`` answers as a registry does (``{"errors": [{"code", "message"}]}``) so that any OCI
client reads it. A 401 carries ``WWW-Authenticate``; a 429/503 carries ``Retry-After``.
"""

from __future__ import annotations

import json

from api.catalog_protocol import (
    BEARER_PREFIX,
    ERROR_BAD_REQUEST,
    ERROR_UNAUTHORIZED,
    INVALID_TOKEN_CHALLENGE,
    ErrorBody,
)

CLIENT_CHALLENGE = 'Bearer realm="ai-models-catalog"'


class Refusal(Exception):  # noqa: N818 - an HTTP answer, not a crash
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        challenge: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after
        self.challenge = challenge

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.challenge is not None:
            headers["WWW-Authenticate"] = self.challenge
        return headers

    def body(self, registry_api: bool) -> bytes:
        if registry_api:
            error = {"code": self.code, "message": self.message}
            return json.dumps({"errors": [error]}).encode()
        return json.dumps(ErrorBody(code=self.code, message=self.message).to_wire()).encode()


def bad_request(message: str) -> Refusal:
    return Refusal(400, ERROR_BAD_REQUEST, message)


def unauthorized(message: str, grant: bool = False) -> Refusal:
    code = "UNAUTHORIZED" if grant else ERROR_UNAUTHORIZED
    challenge = INVALID_TOKEN_CHALLENGE if grant else CLIENT_CHALLENGE
    return Refusal(401, code, message, challenge=challenge)


def bearer(header: str, max_length: int) -> str:
    """The token of an ``Authorization: Bearer`` header; a ``Refusal`` (401) otherwise."""
    if len(header) > max_length + len(BEARER_PREFIX):
        raise unauthorized("the bearer token is too large")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("a bearer token is required")
    return token.strip()
