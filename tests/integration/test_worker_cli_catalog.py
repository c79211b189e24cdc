"""``ai-models-worker prepare catalog+oci://…`` between two real registries.

Registry A holds a ModelPack artifact (pushed by hand: a config, three raw layers, the resolved
annotation). In front of it stands a small HTTPS "grant registry" as the catalog server's read
API would be: GET/HEAD of manifests and blobs with ``Authorization: Bearer <grant token>``, a 401
``invalid_token`` once a token has expired, and ``POST /v1/grants`` answering with a new token
for the catalog token. It counts blob GETs, and can flip a byte of one blob or of the manifest.
The worker copies into registry B, where the manifest lands under the tag with the same digest.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api.catalog_import import CA_KEY, GRANT_KEY, GrantFile, catalog_worker_source
from api.protocol import MANIFEST_RESOLVED_ANNOTATION
from oci.registry import RegistryClient
from tests.ground.certs import CertificateAuthority
from tests.ground.registry import Registry, run_registry
from tests.integration.worker_cli_helpers import run_worker, worker_env

pytestmark = pytest.mark.integration

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.cncf.model.config.v1+json"
RAW = "application/vnd.cncf.model.weight.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
REPOSITORY = "ai-models/catalog/tiny"
CATALOG_TOKEN = "catalog-token-of-cluster-b"
RESOLVED = {"format": "Safetensors", "architecture": "TinyModel", "parameterCount": 1234}


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Artifact:
    digest: str
    manifest: bytes
    blobs: dict[str, bytes]
    """By digest: the config and the layers."""


def _push(host: str, resolved: str) -> Artifact:
    weights = secrets.token_bytes(9 << 20)  # over one PUT: sent with a streaming PATCH
    files = {"model.safetensors": (weights, RAW), "config.json": (b'{"a": 1}', RAW),
             "README.md": (b"# tiny\n", DOC)}  # fmt: skip
    config = json.dumps({"descriptor": {"name": "tiny"}, "config": {"format": "safetensors"},
                         "modelfs": {"type": "layers", "diffIds": []}}).encode()  # fmt: skip
    layers = [
        {"mediaType": media, "digest": _sha(data), "size": len(data),
         "annotations": {"org.cncf.model.filepath": path}}
        for path, (data, media) in files.items()
    ]  # fmt: skip
    document = {
        "schemaVersion": 2, "mediaType": MANIFEST,
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": {"mediaType": CONFIG, "digest": _sha(config), "size": len(config)},
        "layers": layers, "annotations": {MANIFEST_RESOLVED_ANNOTATION: resolved},
    }  # fmt: skip
    manifest = json.dumps(document).encode()
    blobs = {_sha(data): data for data, _ in files.values()} | {_sha(config): config}
    client = RegistryClient(host, insecure=True)
    try:
        for digest, data in blobs.items():
            location = client.start_upload(REPOSITORY)
            location = client.upload_chunk(REPOSITORY, location, data, 0)
            client.finish_upload(REPOSITORY, location, digest)
        client.put_manifest(REPOSITORY, "v1", manifest, MANIFEST)
    finally:
        client.close()
    return Artifact(_sha(manifest), manifest, blobs)


@dataclass
class GrantRegistry:
    """The catalog server's registry read API and grant endpoint, over TLS, in front of A."""

    upstream: str
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    catalog_token: str = CATALOG_TOKEN
    expire_after_blob_gets: int | None = None
    tamper: str | None = None
    """A blob digest, or ``"manifest"``: one byte of it is flipped."""
    honor_grants: bool = True
    """False: the grants issued are not accepted by the read API (a wrong signing key)."""
    blob_gets: list[str] = field(default_factory=list)
    grants: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authorized(self, header: str) -> bool:
        with self.lock:
            return header == f"Bearer {self.token}"

    def served_blob(self, digest: str) -> None:
        with self.lock:
            self.blob_gets.append(digest)
            if self.expire_after_blob_gets and len(self.blob_gets) >= self.expire_after_blob_gets:
                self.token, self.expire_after_blob_gets = "expired-" + self.token, None

    def grant(self) -> str:
        with self.lock:
            self.grants += 1
            issued = secrets.token_urlsafe(16)
            if self.honor_grants:
                self.token = issued
            return issued


def _handler(state: GrantRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length))
            if self.headers.get("Authorization") != f"Bearer {state.catalog_token}":
                with state.lock:
                    state.refused += 1
                self._answer(401, b'{"code":"Unauthorized","message":"no"}', {})
                return
            assert set(request) == {"name", "version", "digest"}
            body = {"registry": f"127.0.0.1:{self.server.server_address[1]}",
                    "repository": REPOSITORY, "token": state.grant(),
                    "expiresAt": "2099-01-01T00:00:00Z"}  # fmt: skip
            self._answer(201, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def do_GET(self) -> None:
            if not state.authorized(self.headers.get("Authorization", "")):
                self._answer(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
                return
            status, headers, data = self._forward()
            digest = self.path.rsplit("/", 1)[-1]
            if "/blobs/" in self.path and self.command == "GET" and status < 300:
                state.served_blob(digest)
            kind = "manifest" if "/manifests/" in self.path else digest
            if state.tamper == kind and data:
                data = bytes([data[0] ^ 1]) + data[1:]
            self._answer(status, data, headers)

        do_HEAD = do_GET  # noqa: N815

        def _forward(self) -> tuple[int, dict[str, str], bytes]:
            host, _, port = state.upstream.partition(":")
            upstream = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                accept = {"Accept": self.headers.get("Accept", "*/*")}
                upstream.request(self.command, self.path, headers=accept)
                answer = upstream.getresponse()
                keep = ("Content-Type", "Docker-Content-Digest", "Content-Length")
                headers = {k: v for k, v in answer.getheaders() if k in keep}
                return answer.status, headers, answer.read()
            finally:
                upstream.close()

    return Handler


@dataclass(frozen=True)
class Ground:
    a: Registry
    b: Registry
    proxy: GrantRegistry
    proxy_host: str
    ca: Path
    artifact: Artifact
    home: Path


@pytest.fixture
def ground(registry: Registry, tmp_path: Path) -> Iterator[Ground]:
    authority = CertificateAuthority(tmp_path / "pki")
    pair = authority.issue("grant-registry", "127.0.0.1", hosts=("127.0.0.1",), server=True)
    artifact = _push(registry.host, json.dumps(RESOLVED, sort_keys=True))
    state = GrantRegistry(registry.host)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with run_registry(tmp_path / "b", name="registry-b") as b:
            host = f"127.0.0.1:{server.server_address[1]}"
            yield Ground(registry, b, state, host, authority.cert, artifact, tmp_path)
    finally:
        server.shutdown()
        server.server_close()


def _grant_file(ground: Ground, token: str | None = None, name: str = "grant") -> Path:
    directory = ground.home / name
    directory.mkdir()
    (directory / CA_KEY).write_bytes(ground.ca.read_bytes())
    grant = GrantFile(
        registry=ground.proxy_host, repository=REPOSITORY, token=token or ground.proxy.token,
        expires_at="2099-01-01T00:00:00Z", catalog_url=f"https://{ground.proxy_host}",
        catalog_token=CATALOG_TOKEN, ca_file=CA_KEY, name="tiny", version="1",
        digest=ground.artifact.digest,
    )  # fmt: skip
    (directory / GRANT_KEY).write_text(grant.to_json())
    return directory / GRANT_KEY


def _prepare(ground: Ground, grant: Path, repository: str, tag: str = "v1") -> Any:
    source = catalog_worker_source(ground.proxy_host, REPOSITORY, ground.artifact.digest)
    env = worker_env(ground.home, AI_MODELS_REGISTRY_INSECURE="true",
                     AI_MODELS_CATALOG_GRANT_FILE=str(grant))  # fmt: skip
    return run_worker(["prepare", source, "--to", f"{ground.b.host}/{repository}:{tag}"], env)


def _tagged(host: str, repository: str, tag: str) -> bytes | None:
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def test_the_artifact_is_copied_by_digest_and_each_blob_moves_once(ground: Ground) -> None:
    ground.proxy.expire_after_blob_gets = 1  # the grant expires after the first blob: renewed
    run = _prepare(ground, _grant_file(ground), "models/tiny")
    result = run.result()

    digest = ground.artifact.digest
    assert _tagged(ground.b.host, "models/tiny", "v1") == ground.artifact.manifest
    assert result["artifact"]["digest"] == digest
    assert result["artifact"]["sizeBytes"] == sum(len(b) for b in ground.artifact.blobs.values())
    assert result["resolved"] == RESOLVED
    assert result["source"] == {
        "resolvedType": "Catalog", "resolvedRevision": digest,
        "catalog": {"name": "tiny", "version": "1", "remoteDigest": digest},
    }  # fmt: skip
    assert sorted(ground.proxy.blob_gets) == sorted(ground.artifact.blobs)
    assert ground.proxy.grants == 1
    assert ground.proxy.token not in run.stderr
    assert CATALOG_TOKEN not in run.stderr


def test_blobs_the_local_registry_has_are_not_fetched(ground: Ground) -> None:
    _prepare(ground, _grant_file(ground), "models/tiny").result()
    before = len(ground.proxy.blob_gets)
    again = _prepare(ground, _grant_file(ground, name="again"), "models/tiny", "v2").result()
    assert again["artifact"]["digest"] == ground.artifact.digest
    assert ground.proxy.blob_gets[before:] == []
    assert _tagged(ground.b.host, "models/tiny", "v2") == ground.artifact.manifest


@pytest.mark.parametrize("tampered", ["manifest", "weights", "config"])
def test_other_bytes_than_the_digest_names_tag_nothing(ground: Ground, tampered: str) -> None:
    artifact = ground.artifact
    document = json.loads(artifact.manifest)
    ground.proxy.tamper = {
        "manifest": "manifest",
        "weights": document["layers"][0]["digest"],
        "config": document["config"]["digest"],
    }[tampered]
    failure = _prepare(ground, _grant_file(ground), "models/tiny").failure(2)
    assert failure["reason"] == "CatalogDigestMismatch"
    assert _tagged(ground.b.host, "models/tiny", "v1") is None


def test_a_refused_renewal_is_catalog_unauthorized(ground: Ground) -> None:
    ground.proxy.catalog_token = "another"
    failure = _prepare(ground, _grant_file(ground, token="stale"), "models/tiny").failure(2)
    assert failure["reason"] == "CatalogUnauthorized"
    assert ground.proxy.refused == 1
    assert CATALOG_TOKEN not in failure["message"]
    assert "stale" not in failure["message"]
    assert _tagged(ground.b.host, "models/tiny", "v1") is None


def test_a_renewed_grant_the_registry_refuses_is_catalog_unauthorized(ground: Ground) -> None:
    ground.proxy.honor_grants = False
    failure = _prepare(ground, _grant_file(ground, token="stale"), "models/tiny").failure(2)
    assert failure["reason"] == "CatalogUnauthorized"
    assert "refused the grant just renewed (401)" in failure["message"]
    assert ground.proxy.grants == 1
    assert _tagged(ground.b.host, "models/tiny", "v1") is None
