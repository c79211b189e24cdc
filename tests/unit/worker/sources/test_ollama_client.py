"""The Ollama registry through the shared client, without sockets: the table from registry
answers to the source's reasons, the Bearer challenge of a token-protected mirror, a mirror
below a path, and the digests the client checks."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
import requests

from tests.unit.oci.fakes import Answer, FakeTransport, error_body
from worker.errors import (
    InvalidSource,
    SourceNotFound,
    SourceUnauthorized,
    SourceUnavailable,
    WorkerError,
)
from worker.sources.ollama_client import OllamaRegistryClient
from worker.sources.settings import SourceSettings

MANIFEST = json.dumps({"schemaVersion": 2, "layers": []}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def _client(
    answer: FakeTransport | None = None,
    *,
    url: str = "https://mirror.test",
    auth: Path | None = None,
) -> tuple[OllamaRegistryClient, FakeTransport]:
    transport = answer or FakeTransport(lambda request: (200, {}, MANIFEST))
    settings = SourceSettings(ollama_registry=url, timeout_seconds=5)
    return OllamaRegistryClient(settings, auth_file=auth, transport=transport), transport


def _answering(status: int, body: bytes) -> FakeTransport:
    return FakeTransport(lambda request: (status, {}, body))


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, error_body("UNAUTHORIZED"), SourceUnauthorized),
        (403, b"{}", SourceUnauthorized),
        (404, error_body("NAME_UNKNOWN"), SourceNotFound),
        (404, error_body("MANIFEST_UNKNOWN"), SourceNotFound),
        (404, error_body("BLOB_UNKNOWN"), SourceNotFound),
        (404, b"not json", SourceNotFound),
        (400, error_body("TAG_INVALID"), InvalidSource),
        (429, error_body("TOOMANYREQUESTS"), SourceUnavailable),
        (500, error_body("UNKNOWN"), SourceUnavailable),
        (503, b"{}", SourceUnavailable),
    ],
)
def test_registry_error_table(status: int, body: bytes, error: type[WorkerError]) -> None:
    client, transport = _client(_answering(status, body))
    with pytest.raises(error) as caught:
        client.manifest("library/m", "1b")
    assert re.match(r"^library/m:1b: ", caught.value.message)
    assert len(transport.requests) == 1  # one try: the Job retries, as for the Hub


def test_the_manifest_is_checked_against_the_announced_digest() -> None:
    client, _ = _client()
    manifest = client.manifest("library/m", "1b")
    assert (manifest.digest, manifest.document) == (DIGEST, {"schemaVersion": 2, "layers": []})
    lying = FakeTransport(
        lambda r: (200, {"Docker-Content-Digest": "sha256:" + "0" * 64}, MANIFEST)
    )
    with pytest.raises(SourceUnavailable, match="returned other bytes than sha256:0000"):
        _client(lying)[0].manifest("library/m", "1b")
    nested = _answering(200, b"[" * 40 + b"]" * 40)
    with pytest.raises(SourceUnavailable, match="nests deeper than 32 levels"):
        _client(nested)[0].manifest("library/m", "1b")


def _token_mirror(realm: str) -> FakeTransport:
    """A mirror that asks for a token from ``realm``; the realm wants Basic pusher:s3cret."""
    basic = "Basic " + base64.b64encode(b"pusher:s3cret").decode()

    def answer(request: requests.PreparedRequest) -> Answer:
        url, auth = str(request.url), request.headers.get("Authorization")
        if url.startswith(realm):
            return (200, {}, b'{"token": "t0k"}') if auth == basic else (401, {}, b"")
        if auth == "Bearer t0k":
            return 200, {}, MANIFEST
        challenge = f'Bearer realm="{realm}",service="mirror",scope="repository:library/m:pull"'
        return 401, {"WWW-Authenticate": challenge}, error_body("UNAUTHORIZED")

    return FakeTransport(answer)


def _docker_config(tmp_path: Path, host: str, password: str) -> Path:
    auth = base64.b64encode(f"pusher:{password}".encode()).decode()
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def test_a_token_protected_mirror_answers_with_the_docker_config_credentials(
    tmp_path: Path,
) -> None:
    auth = _docker_config(tmp_path, "mirror.test", "s3cret")
    client, transport = _client(_token_mirror("https://auth.test/token"), auth=auth)
    assert client.manifest("library/m", "1b").digest == DIGEST
    token_request = transport.requests[1]
    assert str(token_request.url) == (
        "https://auth.test/token?scope=repository%3Alibrary%2Fm%3Apull&service=mirror"
    )
    assert transport.requests[2].headers["Authorization"] == "Bearer t0k"


def test_wrong_or_no_credentials_are_unauthorized_without_the_secret(tmp_path: Path) -> None:
    auth = _docker_config(tmp_path, "mirror.test", "wrong-s3cret")
    client, _ = _client(_token_mirror("https://auth.test/token"), auth=auth)
    with pytest.raises(SourceUnauthorized) as caught:
        client.manifest("library/m", "1b")
    assert caught.value.message.startswith("library/m:1b: the registry refused access (HTTP 401)")
    assert "s3cret" not in caught.value.message
    anonymous, _ = _client(_token_mirror("https://auth.test/token"))
    with pytest.raises(SourceUnauthorized):
        anonymous.manifest("library/m", "1b")


def test_credentials_never_go_to_a_plain_http_realm_of_an_https_mirror(tmp_path: Path) -> None:
    auth = _docker_config(tmp_path, "mirror.test", "s3cret")
    client, transport = _client(_token_mirror("http://auth.test/token"), auth=auth)
    with pytest.raises(SourceUnauthorized) as caught:
        client.manifest("library/m", "1b")
    assert caught.value.message == (
        "library/m:1b: registry mirror.test names the token realm http://auth.test, which is "
        "not HTTPS; refusing to send the registry credentials there"
    )
    assert len(transport.requests) == 1


def test_a_malformed_docker_config_is_unauthorized_naming_the_file(tmp_path: Path) -> None:
    auth = tmp_path / "config.json"
    auth.write_text(json.dumps({"auths": {"mirror.test": {"auth": "s3cret"}}}))
    with pytest.raises(SourceUnauthorized) as caught:
        _client(auth=auth)
    assert caught.value.message == (
        f"mirror.test: registry auth file {auth} is not a usable docker config JSON: the entry "
        "for mirror.test has neither a base64 'auth' of user:password nor 'username' and "
        "'password'"
    )


def test_a_mirror_below_a_path_and_over_plain_http() -> None:
    client, transport = _client(url="http://mirror.test:8080/ollama/")
    client.manifest("library/m", "1b")
    assert transport.requests[0].url == "http://mirror.test:8080/ollama/v2/library/m/manifests/1b"


def test_ranges_and_small_blobs() -> None:
    blob = b"GGUF" + bytes(range(200))
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    def answer(request: requests.PreparedRequest) -> Answer:
        first, _, last = (
            request.headers.get("Range", "bytes=0-").removeprefix("bytes=").partition("-")
        )
        end = int(last) + 1 if last else len(blob)
        part = blob[int(first) : end]
        headers = {"Content-Range": f"bytes {first}-{end - 1}/{len(blob)}"}
        return (206 if "Range" in request.headers else 200), headers, part

    client, _ = _client(FakeTransport(answer))
    assert client.read_range("library/m", digest, 4, 3) == bytes([0, 1, 2])
    assert b"".join(client.stream_blob("library/m", digest, offset=200)) == blob[200:]
    assert client.read_blob("library/m", digest, len(blob)) == blob
    with pytest.raises(SourceUnavailable, match="is larger than 203 bytes"):
        client.read_blob("library/m", digest, len(blob) - 1)
    ignored, _ = _client(_answering(200, blob))
    with pytest.raises(SourceUnavailable, match="ignored the Range header"):
        ignored.read_range("library/m", digest, 4, 3)
