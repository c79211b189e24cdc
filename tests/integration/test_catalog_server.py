"""The catalog server on real parts: the real kube-apiserver (ClusterModels with a Ready status
written through the status subresource, the Secrets of the client token and grant key) and the
real docker-registry holding the artifacts; the server runs as its own process, over HTTPS with
a per-run certificate, as the chart runs it (tests/ground/catalog.py). Every real body is
validated against the JSON Schemas of docs/schemas/."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from api.catalog_protocol import ANNOTATION_CATALOG_VERSION, LABEL_CATALOG_PUBLISH
from catalog.grants import GrantSigner
from controller.errors import Conflict
from controller.kube import CLUSTER_MODELS, KubeClient, Resource, load_api_client
from controller.naming import ObjectKey, repository
from tests.ground.catalog import CatalogServerProcess, run_catalog_server
from tests.ground.controlplane import ControlPlane
from tests.ground.registry import Registry
from tests.integration.server_setup import account_kubeconfig, push_artifact
from tests.unit.worker.oci.artifacts import MANIFEST, Layer, manifest_document, sha256

pytestmark = pytest.mark.integration

PREFIX = "ai-models"
SYSTEM, SERVER = "catalog-system", "catalog-server"
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def _validate(schema: str, body: Any) -> None:
    document = json.loads((SCHEMAS / schema).read_text())
    jsonschema.Draft202012Validator(document).validate(body)


@dataclass
class Ground:
    kube: KubeClient
    registry: Registry
    server: CatalogServerProcess
    work: Path

    def model(
        self, name: str, publish: bool = True, ready: bool = True, version: str | None = None
    ) -> tuple[str, str, list[bytes]]:
        """A ClusterModel with its artifact in the registry: ``(repository, digest, blobs)``."""
        labels = {LABEL_CATALOG_PUBLISH: "publish"} if publish else {}
        annotations = {ANNOTATION_CATALOG_VERSION: version} if version else {}
        body = {
            "apiVersion": "ai.deckhouse.io/v1alpha1",
            "kind": "ClusterModel",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"source": {"url": f"https://huggingface.co/example/{name}"}},
        }
        created = self.kube.create(CLUSTER_MODELS, body)
        repo = repository(PREFIX, ObjectKey("ClusterModel", "", name), created["metadata"]["uid"])
        layers = [
            Layer("model.safetensors", os.urandom(3 << 20)),
            Layer("config.json", json.dumps({"model": name}).encode()),
        ]
        document = manifest_document(self.work / "blobs", layers)
        blobs = [b"{}", *(x.data for x in layers)]
        digest = push_artifact(self.registry, repo, document, blobs)
        size = sum(len(b) for b in blobs)
        status: dict[str, Any] = {"phase": "Ready" if ready else "Pending"}
        if ready:
            status["artifact"] = {"kind": "OCI", "digest": digest, "sizeBytes": size}
            status["resolved"] = {"format": "Safetensors", "parameterCount": 7}
        self.kube.merge_patch(CLUSTER_MODELS, name, {"status": status}, sub="status")
        return repo, digest, blobs

    def catalog(self, **params: str) -> dict[str, Any]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        response = self.server.get(f"/v1/catalog?{query}", self.server.token)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        _validate("catalog-v1.schema.json", body)
        assert response.headers["ETag"] == f'"{body["revision"]}"'
        return body

    def grant(self, name: str, digest: str, version: str = "1") -> requests.Response:
        return requests.post(
            f"{self.server.url}/v1/grants",
            json={"name": name, "version": version, "digest": digest},
            headers={"Authorization": f"Bearer {self.server.token}"},
            verify=str(self.server.ca_cert), timeout=30,
        )  # fmt: skip

    def read(self, path: str, token: str, **headers: str) -> requests.Response:
        return self.server.get(path, token, Accept=MANIFEST, **headers)


@pytest.fixture(scope="module")
def ground(
    crds: ControlPlane, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ground]:
    work = tmp_path_factory.mktemp("catalog")
    kube = KubeClient(load_api_client(str(crds.kubeconfig)))
    with contextlib.suppress(Conflict):  # another suite's server may have made it
        kube.create(NAMESPACES, {"metadata": {"name": SYSTEM}})
    # The chart's rules (helm/ai-models/templates/catalog-server.yaml): list clustermodels, get
    # the two Secrets by name.
    kubeconfig = account_kubeconfig(
        kube, crds, work / "catalog.kubeconfig", (SYSTEM, "catalog"),
        rules=[{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                "resourceNames": [f"{SERVER}-token", f"{SERVER}-grant-key"]}],
        cluster_rules=[
            {"apiGroups": ["ai.deckhouse.io"], "resources": ["clustermodels"], "verbs": ["list"]}
        ],
    )  # fmt: skip
    with run_catalog_server(
        work, kube, kubeconfig, registry.host, namespace=SYSTEM, name=SERVER
    ) as server:
        yield Ground(kube, registry, server, work)


@pytest.fixture(scope="module")
def published(ground: Ground) -> dict[str, tuple[str, str, list[bytes]]]:
    """Three published models, one unpublished and one published but not Ready."""
    made = {name: ground.model(name) for name in ("cat-a", "cat-b", "cat-c")}
    ground.model("cat-private", publish=False)
    ground.model("cat-pending", ready=False)
    return made


def _entries(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in body["entries"]}


def test_ready_published_clustermodels_are_listed(
    ground: Ground, published: dict[str, tuple[str, str, list[bytes]]]
) -> None:
    entries = _entries(ground.catalog())
    assert {"cat-private", "cat-pending"}.isdisjoint(entries)
    repo, digest, blobs = published["cat-a"]
    assert entries["cat-a"] == {
        "name": "cat-a",
        "version": "1",
        "active": True,
        "repository": f"{ground.server.host}/{repo}",
        "digest": digest,
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "sizeBytes": sum(len(b) for b in blobs),
        "resolved": {"format": "Safetensors", "parameterCount": 7},
    }


def test_the_same_etag_is_answered_304_without_a_body(
    ground: Ground, published: dict[str, tuple[str, str, list[bytes]]]
) -> None:
    body = ground.catalog()
    etag = f'"{body["revision"]}"'
    response = ground.server.get("/v1/catalog", ground.server.token, **{"If-None-Match": etag})
    assert (response.status_code, response.content) == (304, b"")
    assert response.headers["ETag"] == etag
    other = ground.server.get("/v1/catalog", ground.server.token, **{"If-None-Match": '"x"'})
    assert other.status_code == 200


def test_pages_of_two_cover_the_catalog_once_under_one_revision(
    ground: Ground, published: dict[str, tuple[str, str, list[bytes]]]
) -> None:
    whole = ground.catalog(pageSize="1000")
    assert whole["nextPageToken"] is None
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"pageSize": "2", **({"pageToken": token} if token else {})}
        body = ground.catalog(**params)
        assert body["revision"] == whole["revision"]
        assert len(body["entries"]) <= 2
        seen += [e["name"] for e in body["entries"]]
        pages += 1
        token = body["nextPageToken"]
        if token is None:
            break
    assert seen == sorted(e["name"] for e in whole["entries"])
    assert pages == (len(seen) + 1) // 2
    assert len(seen) >= 3


def test_a_page_token_of_an_older_revision_is_409(
    ground: Ground, published: dict[str, tuple[str, str, list[bytes]]]
) -> None:
    first = ground.catalog(pageSize="1")
    ground.model("cat-later", version="2025.1")
    response = ground.server.get(
        f"/v1/catalog?pageSize=1&pageToken={first['nextPageToken']}", ground.server.token
    )
    assert response.status_code == 409
    assert response.json()["code"] == "RevisionChanged"
    _validate("error-v1.schema.json", response.json())
    assert _entries(ground.catalog())["cat-later"]["version"] == "2025.1"


@pytest.mark.parametrize(
    ("query", "status"), [("pageSize=0", 400), ("pageSize=1001", 400), ("pageToken=%21", 400)]
)
def test_bad_queries_are_400(ground: Ground, query: str, status: int) -> None:
    response = ground.server.get(f"/v1/catalog?{query}", ground.server.token)
    assert (response.status_code, response.json()["code"]) == (status, "BadRequest")


@pytest.mark.parametrize("token", [None, "wrong"])
def test_without_a_valid_client_token_it_is_401(ground: Ground, token: str | None) -> None:
    response = ground.server.get("/v1/catalog", token)
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    _validate("error-v1.schema.json", response.json())


def test_a_grant_opens_the_manifest_and_its_blobs_byte_identical(
    ground: Ground, published: dict[str, tuple[str, str, list[bytes]]]
) -> None:
    repo, digest, blobs = published["cat-b"]
    answer = ground.grant("cat-b", digest)
    assert answer.status_code == 201, answer.text
    grant = answer.json()
    _validate("grant-v1.schema.json", grant)
    assert (grant["registry"], grant["repository"]) == (ground.server.host, repo)
    manifest = ground.read(f"/v2/{repo}/manifests/{digest}", grant["token"])
    assert manifest.status_code == 200
    assert sha256(manifest.content) == digest
    assert manifest.headers["Docker-Content-Digest"] == digest
    for blob in blobs:
        got = ground.read(f"/v2/{repo}/blobs/{sha256(blob)}", grant["token"])
        assert got.status_code == 200
        assert got.content == blob
    big = blobs[1]
    head = requests.head(
        f"{ground.server.url}/v2/{repo}/blobs/{sha256(big)}",
        headers={"Authorization": f"Bearer {grant['token']}"},
        verify=str(ground.server.ca_cert), timeout=30,
    )  # fmt: skip
    assert (head.status_code, int(head.headers["Content-Length"])) == (200, len(big))
    ranged = ground.read(f"/v2/{repo}/blobs/{sha256(big)}", grant["token"], Range="bytes=1000-")
    assert ranged.status_code == 206
    assert ranged.content == big[1000:]
    assert ranged.headers["Content-Range"] == f"bytes 1000-{len(big) - 1}/{len(big)}"


def test_a_grant_opens_nothing_of_another_repository_or_manifest(
    ground: Ground, published: dict[str, tuple[str, str, list[bytes]]]
) -> None:
    repo_a, digest_a, _ = published["cat-a"]
    repo_c, digest_c, blobs_c = published["cat-c"]
    token = ground.grant("cat-a", digest_a).json()["token"]
    refused = [
        f"/v2/{repo_c}/manifests/{digest_c}",
        f"/v2/{repo_c}/blobs/{sha256(blobs_c[1])}",
        f"/v2/{repo_a}/blobs/{sha256(blobs_c[1])}",
        f"/v2/{repo_a}/manifests/{digest_c}",
    ]
    for path in refused:
        response = ground.read(path, token)
        assert response.status_code == 403, path
        assert response.json()["errors"][0]["code"] == "DENIED"


def test_an_expired_grant_is_401_invalid_token(
    ground: Ground, published: dict[str, tuple[str, str, list[bytes]]]
) -> None:
    repo, digest, _ = published["cat-a"]
    past = GrantSigner(ground.server.grant_key, 60, clock=lambda: time.time() - 3600)
    token, _ = past.issue(repo, digest)
    response = ground.read(f"/v2/{repo}/manifests/{digest}", token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    forged = GrantSigner(b"f" * 32, 600).issue(repo, digest)[0]
    assert ground.read(f"/v2/{repo}/manifests/{digest}", forged).status_code == 401


def test_grant_requests_for_what_is_not_published_are_refused(
    ground: Ground, published: dict[str, tuple[str, str, list[bytes]]]
) -> None:
    _, digest_a, _ = published["cat-a"]
    _, digest_b, _ = published["cat-b"]
    cases = [
        (ground.grant("cat-private", digest_a), 404, "EntryNotFound"),
        (ground.grant("cat-a", digest_a, version="9"), 404, "EntryNotFound"),
        (ground.grant("cat-a", digest_b), 409, "DigestMismatch"),
        (ground.grant("cat-a", "sha256:nope"), 400, "BadRequest"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["code"]) == (status, code)
        _validate("error-v1.schema.json", response.json())


def test_an_oversized_grant_request_is_413_unread(ground: Ground) -> None:
    response = requests.post(
        f"{ground.server.url}/v1/grants", data=b"{" + b" " * (64 << 10) + b"}",
        headers={"Authorization": f"Bearer {ground.server.token}",
                 "Content-Type": "application/json"},
        verify=str(ground.server.ca_cert), timeout=30,
    )  # fmt: skip
    assert (response.status_code, response.json()["code"]) == (413, "PayloadTooLarge")


def test_many_bad_tokens_are_429_with_retry_after(
    crds: ControlPlane, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Its own server: the brake holds the client's address for a minute.
    work = tmp_path_factory.mktemp("catalog-brake")
    kube = KubeClient(load_api_client(str(crds.kubeconfig)))
    with run_catalog_server(work, kube, crds.kubeconfig, registry.host, name="catalog-brake") as s:
        statuses = [s.get("/v1/catalog", "guess").status_code for _ in range(11)]
        assert statuses == [401] * 10 + [429]
        blocked = s.get("/v1/catalog", s.token)
        assert (blocked.status_code, blocked.json()["code"]) == (429, "TooManyRequests")
        assert 0 < int(blocked.headers["Retry-After"]) <= 60


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_large_blob_streams_through_without_being_held(ground: Ground) -> None:
    size = 96 << 20
    name = "cat-large"
    body = {
        "apiVersion": "ai.deckhouse.io/v1alpha1", "kind": "ClusterModel",
        "metadata": {"name": name, "labels": {LABEL_CATALOG_PUBLISH: "publish"}},
        "spec": {"source": {"url": f"https://huggingface.co/example/{name}"}},
    }  # fmt: skip
    created = ground.kube.create(CLUSTER_MODELS, body)
    repo = repository(PREFIX, ObjectKey("ClusterModel", "", name), created["metadata"]["uid"])
    big = os.urandom(size)
    document = manifest_document(ground.work / "blobs", [Layer("model.safetensors", big)])
    digest = push_artifact(ground.registry, repo, document, [b"{}", big])
    status = {"phase": "Ready", "artifact": {"kind": "OCI", "digest": digest, "sizeBytes": size}}
    ground.kube.merge_patch(CLUSTER_MODELS, name, {"status": status}, sub="status")
    token = ground.grant(name, digest).json()["token"]
    pid = ground.server.process.popen.pid
    before = _peak_rss_bytes(pid)
    response = requests.get(
        f"{ground.server.url}/v2/{repo}/blobs/{sha256(big)}",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(ground.server.ca_cert), timeout=60, stream=True,
    )  # fmt: skip
    hasher = hashlib.sha256()
    started = time.monotonic()
    for piece in response.iter_content(1 << 20):
        hasher.update(piece)
    elapsed = time.monotonic() - started
    assert f"sha256:{hasher.hexdigest()}" == sha256(big)
    growth = _peak_rss_bytes(pid) - before
    print(f"relayed {size >> 20} MiB in {elapsed:.2f}s; server peak RSS grew {growth >> 20} MiB")
    assert growth < 24 << 20
