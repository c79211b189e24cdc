"""Error bodies: the protocol's JSON, the status from its one table."""

from __future__ import annotations

import json

import pytest

from api.upload import ERROR_STATUS, ErrorCode
from gateway.errors import UNAUTHORIZED_MESSAGE, Refusal, unauthorized


@pytest.mark.parametrize("code", sorted(ERROR_STATUS))
def test_body_and_status(code: ErrorCode) -> None:
    refusal = Refusal(code, "why", {"Retry-After": "5"})
    assert refusal.status == ERROR_STATUS[code]
    assert json.loads(refusal.body()) == {"code": code, "message": "why"}


def test_unauthorized_has_one_message() -> None:
    assert (unauthorized().status, unauthorized().message) == (401, UNAUTHORIZED_MESSAGE)
