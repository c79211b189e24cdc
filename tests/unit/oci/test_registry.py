"""The registry client without a network: retries and their pauses (on a fake clock), the status
table, the Basic and Bearer challenges, and that no secret reaches a message."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest
import requests

from oci.auth import Credentials
from oci.errors import BadResponse, Refused, Unauthorized, Unavailable
from oci.registry import RegistryClient, RegistrySettings
from tests.unit.oci.fakes import Answer, FakeClock, FakeTransport, error_body

DIGEST = "sha256:" + "ab" * 32
SECRET = "s3cr3t-Pa55"


def _client(
    answers: list[Answer | Exception],
    *,
    credentials: Credentials | None = None,
    attempts: int = 6,
) -> tuple[RegistryClient, FakeTransport, FakeClock]:
    queue = list(answers)

    def handler(_: requests.PreparedRequest) -> Answer:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    transport, clock = FakeTransport(handler), FakeClock()
    client = RegistryClient(
        "r.test",
        credentials=credentials,
        settings=RegistrySettings(attempts=attempts),
        sleep=clock.sleep,
        transport=transport,
    )
    return client, transport, clock


def test_retries_5xx_with_exponential_backoff_then_succeeds() -> None:
    client, transport, clock = _client([(503, {}, b""), (502, {}, b""), (200, {}, b"")])
    started = time.monotonic()
    assert client.blob_size("a/b", DIGEST) == 0
    assert clock.sleeps == [0.5, 1.0]
    assert len(transport.requests) == 3
    assert time.monotonic() - started < 1  # the fake clock: no real pause


def test_gives_up_after_the_configured_attempts_with_a_clear_message() -> None:
    client, transport, clock = _client([(503, {}, error_body("UNAVAILABLE", "busy"))])
    with pytest.raises(Unavailable) as raised:
        client.start_upload("a/b")
    assert str(raised.value) == (
        "registry 503 after 6 attempts: POST /v2/a/b/blobs/uploads/ at r.test (UNAVAILABLE: busy)"
    )
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(transport.requests) == 6


def test_backoff_is_capped() -> None:
    settings = RegistrySettings(backoff_initial=1, backoff_max=5)
    assert [settings.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_connection_errors_are_retried() -> None:
    reset = requests.ConnectionError("connection reset by peer")
    client, _, clock = _client([reset, requests.Timeout("slow"), (404, {}, b"")])
    assert client.blob_size("a/b", DIGEST) is None
    assert clock.sleeps == [0.5, 1.0]


def test_dead_registry_fails_with_registry_unavailable() -> None:
    client, transport, clock = _client([requests.ConnectionError("refused")], attempts=3)
    with pytest.raises(Unavailable, match="registry ConnectionError after 3 attempts"):
        client.start_upload("a/b")
    assert clock.sleeps == [0.5, 1.0]
    assert len(transport.requests) == 3


def test_retry_after_is_honoured_and_capped() -> None:
    answers: list[Answer | Exception] = [
        (429, {"Retry-After": "7"}, b""),
        (503, {"Retry-After": "100000"}, b""),
        (200, {}, b""),
    ]
    client, _, clock = _client(answers)
    client.blob_size("a/b", DIGEST)
    assert clock.sleeps == [7.0, 120.0]


@pytest.mark.parametrize(
    ("status", "body", "error", "codes"),
    [
        (400, error_body("NAME_INVALID", "bad name"), Refused, {"NAME_INVALID"}),
        (404, error_body("BLOB_UNKNOWN"), Refused, {"BLOB_UNKNOWN"}),
        (405, b"not json", Refused, set()),
        (403, b"", Unauthorized, None),
        (400, error_body("DENIED", "no"), Unauthorized, None),
    ],
)
def test_status_table(status: int, body: bytes, error: type[Exception], codes: set[str]) -> None:
    client, _, clock = _client([(status, {}, body)])
    with pytest.raises(error) as raised:
        client.start_upload("a/b")
    if codes is not None:
        assert isinstance(raised.value, Refused)
        assert raised.value.codes == codes
        assert raised.value.status == status
    assert clock.sleeps == []  # 4xx is never retried


def test_basic_challenge_is_answered_once() -> None:
    challenge = (401, {"WWW-Authenticate": 'Basic realm="r"'}, b"")
    client, transport, _ = _client(
        [challenge, (202, {"Location": "/v2/a/uploads/1"}, b"")],
        credentials=Credentials("user", SECRET),
    )
    assert client.start_upload("a") == "https://r.test/v2/a/uploads/1"
    sent = transport.requests[1].headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()


def test_wrong_basic_credentials_are_a_permanent_error_without_the_secret() -> None:
    challenge = (401, {"WWW-Authenticate": 'Basic realm="r"'}, error_body("UNAUTHORIZED"))
    client, transport, clock = _client([challenge], credentials=Credentials("user", SECRET))
    with pytest.raises(Unauthorized) as raised:
        client.start_upload("a")
    assert SECRET not in str(raised.value)
    assert "credentials" in str(raised.value)
    assert len(transport.requests) == 2
    assert clock.sleeps == []
    assert SECRET not in repr(Credentials("user", SECRET))


def test_bearer_challenge_fetches_a_token_for_the_scope_and_caches_it() -> None:
    challenge = {
        "WWW-Authenticate": 'Bearer realm="https://auth.test/token",service="reg",'
        'scope="repository:a:pull,push"'
    }
    answers: list[Answer | Exception] = [
        (401, challenge, b""),
        (200, {}, b'{"token": "tok-1"}'),
        (202, {"Location": "/u/1"}, b""),
        (202, {"Location": "/u/2"}, b""),
    ]
    client, transport, _ = _client(answers, credentials=Credentials("user", SECRET))
    client.start_upload("a")
    client.start_upload("a")
    token_request = transport.requests[1]
    assert token_request.url is not None
    assert token_request.url.startswith("https://auth.test/")
    assert "scope=repository%3Aa%3Apull%2Cpush" in token_request.url
    assert "service=reg" in token_request.url
    assert token_request.headers["Authorization"].startswith("Basic ")
    assert [r.headers.get("Authorization") for r in transport.requests[2:]] == ["Bearer tok-1"] * 2
    assert len(transport.requests) == 4  # the second upload reused the token


def test_anonymous_bearer_token_for_pulls() -> None:
    challenge = {"WWW-Authenticate": 'Bearer realm="https://auth.test/token",service="reg"'}
    answers: list[Answer | Exception] = [
        (401, challenge, b""),
        (200, {}, b'{"access_token": "anon"}'),
        (200, {"Content-Length": "5"}, b""),
    ]
    client, transport, _ = _client(answers)
    assert client.blob_size("a", DIGEST) == 5
    assert "Authorization" not in transport.requests[1].headers
    assert transport.requests[2].headers["Authorization"] == "Bearer anon"


def test_credentials_are_not_sent_to_other_hosts() -> None:
    client, transport, _ = _client([(202, {"Location": "https://storage.test/up/1"}, b"")])
    client._auth._basic = True  # as after a Basic challenge
    client._auth._credentials = Credentials("user", SECRET)
    location = client.start_upload("a")
    client.upload_offset("a", location)
    assert "Authorization" in transport.requests[0].headers
    assert "Authorization" not in transport.requests[1].headers


def test_manifest_get_sends_accept_and_checks_the_digest() -> None:
    body = b'{"schemaVersion":2}'
    client, transport, _ = _client([(200, {"Content-Type": "x/y"}, body)])
    with pytest.raises(BadResponse, match="other bytes than the digest names"):
        client.get_manifest("a", DIGEST, ("application/vnd.oci.image.manifest.v1+json",))
    assert transport.requests[0].headers["Accept"] == "application/vnd.oci.image.manifest.v1+json"
    manifest = client.get_manifest("a", "tag", ("x/y",))
    assert (manifest.data, manifest.media_type) == (body, "x/y")


def _token_realm_answers(realm: str) -> list[Answer | Exception]:
    challenge = {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}
    return [
        (401, challenge, b""),
        (200, {}, b'{"token": "t"}'),
        (200, {"Content-Length": "1"}, b""),
    ]


@pytest.mark.parametrize(
    ("insecure", "credentials", "allowed"),
    [
        (False, Credentials("user", SECRET), False),  # an HTTPS registry, secrets: never in clear
        (True, Credentials("user", SECRET), True),  # the registry itself is plain HTTP
        (False, None, True),  # anonymous: nothing to leak
    ],
)
def test_credentials_go_to_a_plain_http_realm_only_when_the_registry_is_plain_http(
    insecure: bool, credentials: Credentials | None, allowed: bool
) -> None:
    transport = FakeTransport(_queue(_token_realm_answers("http://auth.test/token")))
    client = RegistryClient(
        "r.test", insecure=insecure, credentials=credentials, transport=transport
    )
    if allowed:
        assert client.blob_size("a", DIGEST) == 1
        assert [str(r.url).split("?")[0] for r in transport.requests][1] == "http://auth.test/token"
        return
    with pytest.raises(Unauthorized) as raised:
        client.blob_size("a", DIGEST)
    assert raised.value.message == (
        "registry r.test names the token realm http://auth.test, which is not HTTPS; refusing "
        "to send the registry credentials there"
    )
    assert len(transport.requests) == 1  # the realm was never asked


def _queue(answers: list[Answer | Exception]) -> Callable[[requests.PreparedRequest], Answer]:
    def handler(_: requests.PreparedRequest) -> Answer:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


def test_a_realm_without_a_token_is_unauthorized() -> None:
    challenge = {"WWW-Authenticate": 'Bearer realm="https://auth.test/token"'}
    client, _, _ = _client([(401, challenge, b""), (200, {}, b"<html>")])
    with pytest.raises(Unauthorized, match=r"^token realm auth\.test returned no token$"):
        client.blob_size("a", DIGEST)


def test_tags_and_the_announced_manifest_digest() -> None:
    client, transport, _ = _client([(200, {}, b'{"name": "a", "tags": ["1b", 7, "7b"]}')])
    assert client.tags("library/a", 2) == ("1b",)
    assert str(transport.requests[0].url) == "https://r.test/v2/library/a/tags/list?n=2"
    other = {"Docker-Content-Digest": DIGEST}
    lying, _, _ = _client([(200, other, b"{}")])
    with pytest.raises(BadResponse, match=f"returned other bytes than {DIGEST} names"):
        lying.get_manifest("a", "v1", ("x/y",))


def test_a_blob_range_is_one_ranged_request() -> None:
    answer: Answer = (206, {"Content-Range": "bytes 4-6/10"}, b"456")
    client, transport, _ = _client([answer])
    assert client.blob_range("a", DIGEST, 4, 3) == b"456"
    assert transport.requests[0].headers["Range"] == "bytes=4-6"
    shifted, _, _ = _client([(206, {"Content-Range": "bytes 0-2/10"}, b"012")])
    with pytest.raises(BadResponse, match="a range other than requested"):
        shifted.blob_range("a", DIGEST, 4, 3)


def test_an_unavailable_registry_keeps_its_last_status() -> None:
    client, _, _ = _client([(503, {}, b"")], attempts=2)
    with pytest.raises(Unavailable) as raised:
        client.blob_size("a", DIGEST)
    assert raised.value.status == 503
    dead, _, _ = _client([requests.ConnectionError("refused")], attempts=1)
    with pytest.raises(Unavailable) as raised:
        dead.blob_size("a", DIGEST)
    assert raised.value.status is None


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (requests.ConnectionError("reset"), "registry connection lost: PATCH /v2/a/uploads/1 "),
        ((503, {}, b""), "streamed upload to a: registry answered 503"),
    ],
)
def test_a_streamed_upload_is_sent_once(answer: Answer | Exception, message: str) -> None:
    # A streamed body cannot be replayed: the caller resumes from the session's offset instead.
    client, transport, clock = _client([answer])
    with pytest.raises(Unavailable, match=message):
        client.upload_stream("a", "https://r.test/v2/a/uploads/1", [b"abc", b"de"])
    assert len(transport.requests) == 1
    assert clock.sleeps == []
    sent = transport.requests[0]
    assert sent.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in sent.headers
