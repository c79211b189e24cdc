"""The gateway client over a fake transport: requests as the contract says, errors as typed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from ai_models_cli.errors import GatewayError, GatewayUnreachable
from ai_models_cli.gateway import GatewayClient, UploadState

URL = "https://gw.example/v1/uploads/upload-1234"
TOKEN = "upload-1234.secret-part-of-the-token"
Handler = Callable[[requests.PreparedRequest], tuple[int, dict[str, str], bytes]]


class FakeTransport(BaseAdapter):
    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        self.requests.append(request)
        status, headers, body = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = body
        response.reason = {200: "OK", 502: "Bad Gateway"}.get(status, "")
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def client(handler: Handler) -> tuple[GatewayClient, FakeTransport]:
    transport = FakeTransport(handler)
    session = requests.Session()
    session.mount("https://", transport)
    return GatewayClient(URL, TOKEN, session), transport


def error(status: int, code: str, message: str, **headers: str) -> Handler:
    body = json.dumps({"code": code, "message": message}).encode()
    return lambda request: (status, {"Content-Type": "application/json", **headers}, body)


def test_the_requests_carry_the_token_in_the_header_only() -> None:
    gateway, transport = client(lambda r: (201, {"Upload-Offset": "0"}, b""))
    assert gateway.start("my model.tar", 12_345) == 0
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{URL}?filename=my+model.tar")
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Upload-Length"] == "12345"
    assert TOKEN not in (sent.url or "")


def test_patch_sends_the_offset_and_returns_the_new_one() -> None:
    gateway, transport = client(lambda r: (204, {"Upload-Offset": "8388618"}, b""))
    assert gateway.append(8_388_608, b"0123456789") == 8_388_618
    sent = transport.requests[0]
    assert (sent.method, sent.headers["Upload-Offset"], sent.body) == (
        "PATCH",
        "8388608",
        b"0123456789",
    )


def test_head_reads_the_upload_in_flight_and_none_when_there_is_none() -> None:
    headers = {"Upload-Offset": "100", "Upload-Length": "300", "Upload-Filename": "m.tar"}
    gateway, _ = client(lambda r: (200, headers, b""))
    assert gateway.head() == UploadState(100, 300, "m.tar")
    gateway, _ = client(lambda r: (404, {}, b'{"code": "NoUpload", "message": "none"}'))
    assert gateway.head() is None


def test_commit_posts_the_sha256_and_size() -> None:
    digest = "ab" * 32
    body = json.dumps({"digest": f"sha256:{digest}", "size": 3, "filename": "m.gguf"}).encode()
    gateway, transport = client(lambda r: (201, {}, body))
    assert gateway.commit(digest, 3).digest == f"sha256:{digest}"
    sent = transport.requests[0]
    assert (sent.url, json.loads(sent.body or b"")) == (
        f"{URL}/commit",
        {"sha256": digest, "size": 3},
    )


@pytest.mark.parametrize(
    ("status", "code", "exit_code"),
    [
        (401, "Unauthorized", 2),
        (410, "UploadExpired", 2),
        (413, "TooLarge", 2),
        (400, "UnsupportedFormat", 2),
        (400, "DigestMismatch", 2),
        (429, "TooManyAttempts", 1),
        (503, "RegistryUnavailable", 1),
    ],
)
def test_an_error_answer_is_the_gateway_code_and_message_exactly(
    status: int, code: str, exit_code: int
) -> None:
    gateway, _ = client(error(status, code, "the gateway's own words", **{"Retry-After": "7"}))
    with pytest.raises(GatewayError) as raised:
        gateway.append(0, b"x")
    assert str(raised.value) == f"{code}: the gateway's own words"
    assert (raised.value.status, raised.value.exit_code, raised.value.retry_after) == (
        status,
        exit_code,
        7.0,
    )


def test_an_offset_mismatch_carries_the_gateway_offset() -> None:
    gateway, _ = client(error(409, "OffsetMismatch", "at 42", **{"Upload-Offset": "42"}))
    with pytest.raises(GatewayError) as raised:
        gateway.append(50, b"x")
    assert (raised.value.code, raised.value.offset) == ("OffsetMismatch", 42)


def test_an_answer_that_is_not_the_gateway_keeps_the_http_status() -> None:
    gateway, _ = client(lambda r: (502, {"Content-Type": "text/html"}, b"<html>proxy</html>"))
    with pytest.raises(GatewayError) as raised:
        gateway.head()
    assert (str(raised.value), raised.value.exit_code) == ("HTTP502: Bad Gateway", 1)


def test_a_broken_connection_is_unreachable_and_does_not_show_the_token() -> None:
    def refuse(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        raise requests.ConnectionError("connection reset by peer")

    gateway, _ = client(refuse)
    with pytest.raises(GatewayUnreachable) as raised:
        gateway.head()
    assert str(raised.value) == f"{URL}: ConnectionError: connection reset by peer"
    assert raised.value.exit_code == 1
