"""The upload gateway on real parts: two replicas (processes) against the real kube-apiserver —
with the credentials of a ServiceAccount bound to exactly the Role the chart gives the gateway
(secrets get and update in the system namespace) — and the real docker-registry.

Each test writes its own session record, as the controller would, and reads it back: every
refusal is asserted by status, JSON code, and a record with nothing committed."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from api.upload import (
    RECORD_KEY,
    SessionRecord,
    UploadOwner,
    new_token,
    parse_record,
    record_name,
    staging_repository,
    token_sha256,
)
from controller.kube import SECRETS, KubeClient, Resource, load_api_client
from gateway.errors import UNAUTHORIZED_MESSAGE
from tests.ground.controlplane import ControlPlane
from tests.ground.gateway import GatewayReplica, run_gateways, start_gateway
from tests.ground.registry import Registry
from tests.integration.server_setup import account_kubeconfig

pytestmark = pytest.mark.integration

SYSTEM = "gateway-system"
PREFIX = "ai-models"
MiB = 1 << 20
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
GATEWAY_RULES = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"]}]


@dataclass
class Ground:
    kube: KubeClient
    registry: Registry
    replicas: list[GatewayReplica]
    work: Path
    kubeconfig: Path
    tokens: list[str] = field(default_factory=list)

    def session(self, limit: int = 64 * MiB, expires_in: float = 3600) -> Session:
        name = f"upload-{uuid.uuid4().hex[:16]}"
        token = new_token(name)
        record = SessionRecord(
            session=name,
            owner=UploadOwner(kind="Model", namespace="ns", name="m", uid=name[7:]),
            token_sha256=token_sha256(token),
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in),
            size_limit_bytes=limit,
            staging_repository=staging_repository(PREFIX, name),
        )
        encoded = base64.b64encode(record.to_json().encode()).decode()
        secret = {"metadata": {"name": record_name(name)}, "data": {RECORD_KEY: encoded}}
        self.kube.create(SECRETS, secret, SYSTEM)
        self.tokens.append(token)
        return Session(self, name, token)


@dataclass
class Session:
    ground: Ground
    name: str
    token: str

    def url(self, replica: int = 0, commit: bool = False) -> str:
        base = f"{self.ground.replicas[replica].url}/v1/uploads/{self.name}"
        return f"{base}/commit" if commit else base

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", **extra}

    def record(self) -> SessionRecord:
        secret = self.ground.kube.get(SECRETS, record_name(self.name), SYSTEM)
        assert secret is not None
        return parse_record(base64.b64decode(secret["data"][RECORD_KEY]))

    def call(self, method: str, replica: int = 0, commit: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.headers())
        return requests.request(method, self.url(replica, commit), timeout=60, **kwargs)

    def post(self, filename: str = "model.gguf", replica: int = 0, **headers: str) -> Any:
        return self.call("POST", replica, params={"filename": filename},
                         headers=self.headers(**headers))  # fmt: skip

    def patch(self, data: bytes, offset: int, replica: int = 0) -> Any:
        headers = self.headers(**{"Upload-Offset": str(offset)})
        return self.call("PATCH", replica, data=data, headers=headers)

    def commit(self, data: bytes, replica: int = 0, sha256: str | None = None) -> Any:
        body = {"sha256": sha256 or hashlib.sha256(data).hexdigest(), "size": len(data)}
        return self.call("POST", replica, commit=True, json=body)


@pytest.fixture(scope="module")
def ground(
    control_plane: ControlPlane, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ground]:
    work = tmp_path_factory.mktemp("gateway")
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    kube.create(NAMESPACES, {"metadata": {"name": SYSTEM}})
    kubeconfig = account_kubeconfig(
        kube, control_plane, work / "gateway.kubeconfig", (SYSTEM, "gateway"), rules=GATEWAY_RULES
    )
    with run_gateways(work, 2, kubeconfig, SYSTEM, registry.host) as replicas:
        yield Ground(kube, registry, replicas, work, kubeconfig)


def blob(ground: Ground, session: Session, digest: str) -> bytes:
    repository = staging_repository(PREFIX, session.name)
    got = requests.get(f"{ground.registry.url}/v2/{repository}/blobs/{digest}", timeout=60)
    assert got.status_code == 200, got.text
    return got.content


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


# ---- what works ---------------------------------------------------------------------------------


def test_put_whole_file(ground: Ground) -> None:
    session = ground.session()
    data = os.urandom(20 * MiB + 123)
    params = {"filename": "model.gguf", "sha256": hashlib.sha256(data).hexdigest()}
    put = session.call("PUT", params=params, data=data)
    assert put.status_code == 201, put.text
    expected = {"digest": digest_of(data), "size": len(data), "filename": "model.gguf"}
    assert put.json() == expected
    assert blob(ground, session, digest_of(data)) == data
    committed = session.record().committed
    assert committed is not None
    assert committed.model_dump() == expected


def test_put_chunked_transfer(ground: Ground) -> None:
    session = ground.session()
    pieces = [os.urandom(3 * MiB) for _ in range(4)]
    put = session.call("PUT", params={"filename": "w.safetensors"}, data=iter(pieces))
    assert put.status_code == 201, put.text
    data = b"".join(pieces)
    assert put.json()["digest"] == digest_of(data)
    assert blob(ground, session, digest_of(data)) == data


def test_resumable_post_patch_head_commit(ground: Ground) -> None:
    session = ground.session()
    data = os.urandom(17 * MiB)
    started = session.post("dir.tar", **{"Upload-Length": str(len(data))})
    assert (started.status_code, started.headers["Upload-Offset"]) == (201, "0")
    for offset in range(0, len(data), 8 * MiB):
        patched = session.patch(data[offset : offset + 8 * MiB], offset)
        assert patched.status_code == 204, patched.text
        assert patched.headers["Upload-Offset"] == str(min(offset + 8 * MiB, len(data)))
    head = session.call("HEAD")
    assert head.status_code == 200
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (
        str(len(data)), str(len(data)),
    )  # fmt: skip
    assert head.headers["Upload-Filename"] == "dir.tar"
    done = session.commit(data)
    assert done.status_code == 201, done.text
    assert done.json() == {"digest": digest_of(data), "size": len(data), "filename": "dir.tar"}
    assert blob(ground, session, digest_of(data)) == data
    assert session.record().committed is not None


def test_resume_on_the_other_replica_after_a_broken_connection(ground: Ground) -> None:
    session = ground.session()
    data = os.urandom(20 * MiB)
    assert session.post("model.gguf").status_code == 201
    assert session.patch(data[: 8 * MiB], 0).status_code == 204
    # The client dies mid-body on replica 0: 8 MiB + 1 MiB of a 12 MiB PATCH, then a close.
    _broken_patch(session, 0, data[8 * MiB : 17 * MiB], offset=8 * MiB, declared=12 * MiB)
    head = session.call("HEAD", replica=1)
    assert head.status_code == 200, head.text
    offset = int(head.headers["Upload-Offset"])
    assert offset == 17 * MiB  # every byte that arrived (whole 1 MiB pieces) is in the registry
    rest = data[offset:]
    ranged = session.headers(**{"Content-Range": f"bytes {offset}-{len(data) - 1}/{len(data)}"})
    patched = session.call("PATCH", replica=1, data=rest, headers=ranged)
    assert (patched.status_code, patched.headers["Upload-Offset"]) == (204, str(len(data)))
    done = session.commit(data, replica=1)
    assert done.status_code == 201, done.text
    assert blob(ground, session, digest_of(data)) == data


def test_a_stopping_replica_finishes_the_request_in_flight(ground: Ground) -> None:
    session = ground.session()
    data = os.urandom(12 * MiB)
    assert session.post("model.gguf").status_code == 201
    leaving = start_gateway(ground.work, ground.kubeconfig, SYSTEM, ground.registry.host,
                            name="gateway-leaving")  # fmt: skip
    try:
        head = (f"PATCH /v1/uploads/{session.name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {session.token}\r\nUpload-Offset: 0\r\n"
                f"Content-Length: {len(data)}\r\n\r\n")  # fmt: skip
        with socket.create_connection(("127.0.0.1", leaving.port), timeout=60) as connection:
            connection.sendall(head.encode() + data[: 5 * MiB])
            time.sleep(0.5)
            os.kill(leaving.pid, signal.SIGTERM)  # a rolling update
            time.sleep(0.5)
            connection.sendall(data[5 * MiB :])
            answer = connection.makefile("rb").read()
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 204 No Content"
        assert b"Connection: close" in rest
        assert f"Upload-Offset: {len(data)}".encode() in rest
        assert leaving.process.popen.wait(30) == 0
    finally:
        leaving.stop()
    head_answer = session.call("HEAD", replica=1)
    assert head_answer.status_code == 200, session.record()
    assert head_answer.headers["Upload-Offset"] == str(len(data))
    assert session.commit(data, replica=1).status_code == 201


def _broken_patch(session: Session, replica: int, data: bytes, offset: int, declared: int) -> None:
    port = session.ground.replicas[replica].port
    head = (f"PATCH /v1/uploads/{session.name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {session.token}\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {declared}\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head.encode() + data)
        connection.shutdown(socket.SHUT_WR)
        connection.recv(1)  # the gateway closes without an answer


# ---- what is refused ----------------------------------------------------------------------------


def refused(response: Any, status: int, code: str, session: Session | None = None) -> None:
    assert response.status_code == status, response.text
    if response.request.method != "HEAD":
        assert response.json()["code"] == code
    if session is not None:
        assert session.record().committed is None


@pytest.mark.parametrize("case", ["wrong", "other session", "unknown session", "none", "basic"])
def test_unauthorized(ground: Ground, case: str) -> None:
    session, other = ground.session(), ground.session()
    token = {"wrong": session.token[:-2] + "xx", "other session": other.token,
             "unknown session": new_token("upload-nobody"), "none": None,
             "basic": None}[case]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if case == "basic":
        headers = {"Authorization": f"Basic {base64.b64encode(b'a:b').decode()}"}
    put = session.call("PUT", params={"filename": "m.gguf"}, data=b"x" * 10, headers=headers)
    refused(put, 401, "Unauthorized", session)
    assert put.json()["message"] == UNAUTHORIZED_MESSAGE
    assert session.token not in put.text


def test_expired(ground: Ground) -> None:
    session = ground.session(expires_in=-1)
    refused(session.post(), 410, "UploadExpired", session)
    put = session.call("PUT", params={"filename": "m.gguf"}, data=b"x")
    refused(put, 410, "UploadExpired", session)


def test_twelve_wrong_tokens_then_429(ground: Ground) -> None:
    session = ground.session()
    answers = [session.call("HEAD", replica=1, headers=session.headers(f"{session.name}.w{n}"))
               for n in range(12)]  # fmt: skip
    assert [a.status_code for a in answers] == [401] * 10 + [429] * 2
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
    right = session.call("POST", replica=1, params={"filename": "m.gguf"})
    refused(right, 429, "TooManyAttempts", session)
    assert session.record().upload is None
    assert session.post(replica=0).status_code == 201  # per replica


def test_too_large(ground: Ground) -> None:
    session = ground.session(limit=1 * MiB)
    put = session.call("PUT", params={"filename": "m.gguf"}, data=b"x" * (MiB + 1))
    refused(put, 413, "TooLarge", session)
    chunked = session.call("PUT", params={"filename": "m.gguf"}, data=iter([b"x" * MiB, b"y"]))
    refused(chunked, 413, "TooLarge", session)
    refused(session.post(**{"Upload-Length": str(MiB + 1)}), 413, "TooLarge", session)
    assert session.post().status_code == 201
    assert session.patch(b"a" * (MiB - 10), 0).status_code == 204
    refused(session.patch(b"b" * 11, MiB - 10), 413, "TooLarge", session)
    ranged = session.headers(**{"Content-Range": f"bytes {MiB - 10}-{MiB - 9}/{2 * MiB}"})
    refused(session.call("PATCH", data=b"bb", headers=ranged), 413, "TooLarge", session)
    assert session.call("HEAD").headers["Upload-Offset"] == str(MiB - 10)


@pytest.mark.parametrize(
    ("content_range", "status", "code", "offset"),
    [
        ("bytes 200-299/*", 409, "OffsetMismatch", "100"),
        ("bytes 50-149/*", 409, "OffsetMismatch", "100"),
        ("bytes -100-0/*", 400, "BadRequest", None),
        ("bytes=100-199", 400, "BadRequest", None),
        ("bytes 100-150/*", 400, "BadRequest", None),
    ],
    ids=["gap", "overlap", "negative", "garbage", "length disagrees"],
)
def test_content_range(
    ground: Ground, content_range: str, status: int, code: str, offset: str | None
) -> None:
    session = ground.session()
    assert session.post().status_code == 201
    assert session.patch(b"a" * 100, 0).status_code == 204
    answer = session.call("PATCH", data=b"b" * 100,
                          headers=session.headers(**{"Content-Range": content_range}))  # fmt: skip
    refused(answer, status, code, session)
    assert answer.headers.get("Upload-Offset") == offset
    assert session.call("HEAD").headers["Upload-Offset"] == "100"


def test_negative_upload_offset(ground: Ground) -> None:
    session = ground.session()
    assert session.post().status_code == 201
    refused(session.call("PATCH", data=b"x", headers=session.headers(**{"Upload-Offset": "-1"})),
            400, "BadRequest", session)  # fmt: skip


def test_commit_with_the_wrong_sha256(ground: Ground) -> None:
    session = ground.session()
    data = os.urandom(MiB)
    assert session.post().status_code == 201
    assert session.patch(data, 0).status_code == 204
    refused(session.commit(data, sha256="0" * 64), 400, "DigestMismatch", session)
    refused(session.call("HEAD"), 404, "NoUpload", session)


def test_put_with_the_wrong_sha256(ground: Ground) -> None:
    session = ground.session()
    put = session.call("PUT", params={"filename": "m.gguf", "sha256": "0" * 64}, data=b"abc")
    refused(put, 400, "DigestMismatch", session)


def test_commit_twice(ground: Ground) -> None:
    session = ground.session()
    data = b"weights" * 1000
    assert session.post().status_code == 201
    assert session.patch(data, 0).status_code == 204
    assert session.commit(data).status_code == 201
    first = session.record().committed
    again = session.commit(data, replica=1)
    assert again.status_code == 409
    assert again.json()["code"] == "AlreadyCommitted"
    assert session.record().committed == first
    refused(session.patch(b"more", len(data)), 409, "AlreadyCommitted")


def test_bad_filename(ground: Ground) -> None:
    session = ground.session()
    refused(session.post("model.bin"), 400, "UnsupportedFormat", session)
    put = session.call("PUT", params={"filename": "../x.gguf"}, data=b"x")
    refused(put, 400, "UnsupportedFormat", session)


def test_head_and_patch_before_any_upload(ground: Ground) -> None:
    session = ground.session()
    refused(session.call("HEAD"), 404, "NoUpload", session)
    refused(session.patch(b"x", 0), 404, "NoUpload", session)


def test_logs_hold_no_token(ground: Ground) -> None:
    """Last in the module: every token issued so far, never in a replica's log."""
    logs = [r.process.log.read_text() for r in ground.replicas]
    assert all('"event": "request"' in log for log in logs)
    for log in logs:
        assert "Bearer" not in log
        assert "Authorization" not in log
        assert not [token for token in ground.tokens if token.split(".", 1)[1] in log]
