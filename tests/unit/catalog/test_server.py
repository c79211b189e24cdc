"""The catalog server's routes on fakes: the in-memory API server and registry, one request at
a time over a Unix socket pair (no network). The real server, over TLS with the real API server
and registry, is tests/integration/test_catalog_server.py."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from api.catalog_protocol import LABEL_CATALOG_PUBLISH
from catalog.auth import ClientTokens, FailureLimiter
from catalog.cluster import Models, Upstream
from catalog.grants import GrantSigner
from catalog.server import Parts, _Handler
from controller.errors import ApiUnavailable
from controller.kube import CLUSTER_MODELS
from oci.registry import RegistryClient, RegistrySettings
from tests.unit.controller.fakekube import FakeKube
from tests.unit.oci.fakes import FakeTransport, MemoryRegistry

TOKEN = "client-token"
HOST = "catalog.example.com:8443"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Rig:
    def __init__(self) -> None:
        self.kube = FakeKube()
        self.registry = MemoryRegistry()
        self.now = 1_000_000.0
        client = RegistryClient(
            "registry.local:5000",
            insecure=True,
            transport=FakeTransport(self.registry),
            settings=RegistrySettings(attempts=1),
        )
        self.parts = Parts(
            models=Models(self.kube, f"{LABEL_CATALOG_PUBLISH}=publish", "ai-models", ttl=0),
            tokens=ClientTokens(lambda: [TOKEN], ttl=0),
            limiter=FailureLimiter(max_failures=3, clock=lambda: self.now),
            signer=GrantSigner(b"k" * 32, 600, clock=lambda: self.now),
            upstream=Upstream(client),
            public_host=HOST,
        )

    def model(self, name: str, layer: bytes) -> str:
        document = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "x", "digest": _sha(b"{}"), "size": 2},
            "layers": [{"mediaType": "y", "digest": _sha(layer), "size": len(layer)}],
        }
        manifest = json.dumps(document).encode()
        digest = _sha(manifest)
        self.registry.manifests[digest] = manifest
        self.registry.blobs.update({_sha(b"{}"): b"{}", _sha(layer): layer})
        labels = {LABEL_CATALOG_PUBLISH: "publish"}
        self.kube.seed(CLUSTER_MODELS, {"metadata": {"name": name, "labels": labels}})
        status = {"phase": "Ready", "artifact": {"digest": digest, "sizeBytes": len(layer) + 2}}
        self.kube.set_status(CLUSTER_MODELS, name, None, status)
        return digest

    def ask(
        self,
        method: str,
        path: str,
        token: str | None = TOKEN,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body:
            headers["Content-Length"] = str(len(body))
        lines = [
            f"{method} {path} HTTP/1.1",
            "Host: ignored",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        ours, theirs = socket.socketpair()
        server = SimpleNamespace(parts=self.parts)

        def serve() -> None:
            try:
                _Handler(theirs, ("10.0.0.9", 0), server)  # type: ignore[arg-type]
            finally:
                theirs.close()  # as the server does after a request: the client sees EOF

        thread = threading.Thread(target=serve)
        thread.start()
        ours.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        ours.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: ours.recv(1 << 16), b""))
        thread.join()
        ours.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        parsed = dict(line.split(": ", 1) for line in header_lines)
        return int(status_line.split()[1]), parsed, payload


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_the_catalog_page_and_its_etag(rig: Rig) -> None:
    digest = rig.model("alpha", b"weights")
    status, headers, body = rig.ask("GET", "/v1/catalog")
    page: dict[str, Any] = json.loads(body)
    assert status == 200
    assert headers["ETag"] == f'"{page["revision"]}"'
    assert [(e["name"], e["digest"], e["repository"]) for e in page["entries"]] == [
        ("alpha", digest, f"{HOST}/ai-models/clustermodel/alpha")
    ]
    again = rig.ask("GET", "/v1/catalog", headers={"If-None-Match": headers["ETag"]})
    assert (again[0], again[2]) == (304, b"")


def test_a_grant_opens_the_manifest_and_listed_blobs_only(rig: Rig) -> None:
    digest = rig.model("alpha", b"weights")
    rig.model("beta", b"other")
    request = json.dumps({"name": "alpha", "version": "1", "digest": digest}).encode()
    status, _, body = rig.ask("POST", "/v1/grants", body=request)
    assert status == 201
    grant = json.loads(body)
    assert (grant["registry"], grant["repository"]) == (HOST, "ai-models/clustermodel/alpha")
    base = "/v2/ai-models/clustermodel"
    assert rig.ask("GET", f"{base}/alpha/blobs/{_sha(b'weights')}", grant["token"])[2] == b"weights"
    ranged = rig.ask(
        "GET",
        f"{base}/alpha/blobs/{_sha(b'weights')}",
        grant["token"],
        headers={"Range": "bytes=2-4"},
    )
    assert (ranged[0], ranged[1]["Content-Range"], ranged[2]) == (206, "bytes 2-4/7", b"igh")
    assert rig.ask("GET", f"{base}/alpha/blobs/{_sha(b'other')}", grant["token"])[0] == 403
    assert rig.ask("GET", f"{base}/beta/manifests/{digest}", grant["token"])[0] == 403
    rig.now += 600
    expired = rig.ask("GET", f"{base}/alpha/manifests/{digest}", grant["token"])
    assert (expired[0], expired[1]["WWW-Authenticate"]) == (401, 'Bearer error="invalid_token"')


def test_bad_tokens_are_braked_per_address(rig: Rig) -> None:
    assert [rig.ask("GET", "/v1/catalog", "guess")[0] for _ in range(3)] == [401, 401, 401]
    status, headers, body = rig.ask("GET", "/v1/catalog")
    assert (status, json.loads(body)["code"]) == (429, "TooManyRequests")
    assert int(headers["Retry-After"]) == 60


def test_the_api_server_down_is_503_with_retry_after(rig: Rig) -> None:
    rig.kube.fail("list", CLUSTER_MODELS, ApiUnavailable(503, "ServiceUnavailable", "down"))
    status, headers, body = rig.ask("GET", "/v1/catalog")
    assert (status, headers["Retry-After"], json.loads(body)["code"]) == (503, "5", "Unavailable")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/grants", b"", 405, "MethodNotAllowed"),
        ("GET", "/v1/other", b"", 404, "NotFound"),
        ("POST", "/v1/grants", b"{}", 400, "BadRequest"),
        ("POST", "/v1/grants", b"x" * 20000, 413, "PayloadTooLarge"),
        ("POST", "/v1/grants", b"", 411, "LengthRequired"),
        ("GET", "/v1/catalog?" + "&".join(f"a{i}=1" for i in range(9)), b"", 400, "BadRequest"),
    ],
)
def test_bad_requests_get_their_code(
    rig: Rig, method: str, path: str, body: bytes, status: int, code: str
) -> None:
    answer = rig.ask(method, path, body=body)
    assert (answer[0], json.loads(answer[2])["code"]) == (status, code)
