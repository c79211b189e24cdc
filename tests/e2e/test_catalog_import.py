"""Two clusters on the test ground: a ClusterModel prepared in one is imported by digest in the
other through the catalog server.

Cluster A is the e2e ground (the shared control plane, its controller, node emulator, Hub
emulator and registry). The catalog server publishes A's ClusterModels, reading A's registry
through a counting proxy. Cluster B is a second, separate control plane (its own API server,
chart, node emulator and controller) with its own registry: its ModelCatalogSource names the
catalog server, and a ClusterModel with ``spec.source.catalog`` turns Ready with A's digest,
each blob moved once, the catalog token in no Job, status or Event of B. A second catalog
server reads A's registry through a proxy that flips a byte of the blobs it serves: the import
from it fails with ``CatalogDigestMismatch`` and tags nothing in B.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from controller.kube import KubeClient, load_api_client
from tests.e2e.conftest import (
    REPO,
    SYSTEM,
    WORKER,
    WORKER_IMAGE,
    ControllerProcess,
    RestartableRegistry,
    controller_kubeconfig,
    get_json,
    wait_for,
)
from tests.e2e.helpers import apply, manifest, model, wait_phase
from tests.ground.catalog import CatalogServerProcess, run_catalog_server
from tests.ground.controlplane import ControlPlane, run_control_plane
from tests.ground.nodeemu import NodeEmulator
from tests.ground.registry import Registry, run_registry
from tests.integration.chart import find, install
from tests.integration.worker_cli_helpers import CountingProxy

MINILM_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_URL = "https://ollama.com/library/smollm2:135m"
HOP_HEADERS = ("content-length", "connection", "transfer-encoding")
SECRETS_NAMESPACE = "d8-system"


@dataclass(frozen=True)
class ClusterB:
    plane: ControlPlane
    registry: Registry
    controller: ControllerProcess


def _controller_config(docs: list[dict[str, object]], path: Path) -> Path:
    configmap = find(docs, "ConfigMap", "ai-models-controller")
    config = yaml.safe_load(configmap["data"]["config.yaml"])  # type: ignore[index]
    config["controller"].update(
        {"metricsPort": 0, "healthPort": 0, "bindAddress": "127.0.0.1", "retryBaseSeconds": 0.5,
         "retryMaxSeconds": 5}
    )  # fmt: skip
    config["webhook"].update({"port": 0, "bindAddress": "127.0.0.1"})
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def cluster_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterB]:
    work = tmp_path_factory.mktemp("cluster-b")
    with (
        run_control_plane(work / "plane") as plane,
        run_registry(work, name="registry-b") as registry,
    ):
        docs = install(
            plane,
            SYSTEM,
            sets=(
                f"image.worker={WORKER_IMAGE}",
                f"registry.host={registry.host}",
                "registry.insecure=true",
                "worker.maxConcurrent=1",
                "worker.progressIntervalSeconds=1",
                "controller.logFormat=console",
            ),
        )
        config = _controller_config(docs, work / "controller.yaml")
        with NodeEmulator(
            plane, work / "node", {WORKER_IMAGE: [str(WORKER)]}, namespaces=[SYSTEM],
            image_paths=[REPO],
        ):  # fmt: skip
            process = ControllerProcess(
                config, controller_kubeconfig(plane, work), work / "controller-b"
            )
            process.start()
            try:
                yield ClusterB(plane, registry, process)
            finally:
                process.stop()


@pytest.fixture(scope="module")
def registry_a_proxy(e2e_registry: RestartableRegistry) -> Iterator[CountingProxy]:
    proxy = CountingProxy(e2e_registry.host)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def catalog_server(
    control_plane: ControlPlane,
    registry_a_proxy: CountingProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CatalogServerProcess]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    with run_catalog_server(
        tmp_path_factory.mktemp("catalog-server"), kube, control_plane.kubeconfig,
        registry_a_proxy.host,
    ) as server:  # fmt: skip
        yield server


def _secret(plane: ControlPlane, name: str, data: dict[str, bytes]) -> None:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    meta = {"name": name, "namespace": SECRETS_NAMESPACE}
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta}
    apply(plane, {**body, "data": encoded})


def _trust(plane: ControlPlane, name: str, server: CatalogServerProcess) -> None:
    """A ModelCatalogSource ``name`` for ``server``, with its token and CA Secrets."""
    _secret(plane, f"{name}-credentials", {"token": server.token.encode()})
    _secret(plane, f"{name}-ca", {"ca.crt": server.ca_cert.read_bytes()})
    apply(plane, {
        "apiVersion": "ai.deckhouse.io/v1alpha1", "kind": "ModelCatalogSource",
        "metadata": {"name": name},
        "spec": {"url": server.url, "credentialsSecretName": f"{name}-credentials",
                 "caSecretName": f"{name}-ca", "refreshInterval": "30s"},
    })  # fmt: skip


def test_a_cluster_model_of_a_is_imported_in_b_by_digest_each_blob_once(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    e2e_registry: RestartableRegistry,
    registry_a_proxy: CountingProxy,
    catalog_server: CatalogServerProcess,
    cluster_b: ClusterB,
) -> None:
    # Cluster A prepares and publishes.
    published = model("minilm-central", MINILM_URL, None)
    published["metadata"]["labels"] = {"ai.deckhouse.io/catalog": "publish"}
    apply(control_plane, published)
    ready_a = wait_phase(control_plane, "minilm-central", None, "Ready", timeout=300)
    digest = ready_a["status"]["artifact"]["digest"]

    # Cluster B trusts the catalog and imports the entry.
    plane = cluster_b.plane
    _trust(plane, "central", catalog_server)

    def source_ready() -> dict[str, object] | None:
        status = get_json(plane, "modelcatalogsource", "central").get("status") or {}
        return status if status.get("entryCount") == 1 else None

    revision = wait_for(source_ready, 120)["catalogRevision"]
    before = len(registry_a_proxy.exchanges)
    apply(plane, {
        "apiVersion": "ai.deckhouse.io/v1alpha1", "kind": "ClusterModel",
        "metadata": {"name": "minilm-imported"},
        "spec": {"source": {"catalog": {"name": "minilm-central"}}},
    })  # fmt: skip
    imported = wait_phase(plane, "minilm-imported", None, "Ready", "Failed", timeout=300)
    status = imported["status"]
    assert status["phase"] == "Ready", json.dumps(status, indent=1)

    assert status["artifact"]["digest"] == digest
    assert status["source"] == {
        "resolvedType": "Catalog", "resolvedRevision": digest,
        "catalog": {"sourceName": "central", "name": "minilm-central", "version": "1",
                    "catalogRevision": revision, "remoteDigest": digest},
    }  # fmt: skip
    assert status["resolved"] == ready_a["status"]["resolved"]
    uid = imported["metadata"]["uid"]
    code, body, local = manifest(
        cluster_b.registry.url, "ai-models/clustermodel/minilm-imported", uid
    )
    assert (code, local) == (200, digest)

    blobs = [body["config"]["digest"], *{layer["digest"] for layer in body["layers"]}]
    gets = [
        e.path.rsplit("/", 1)[-1]
        for e in registry_a_proxy.exchanges[before:]
        if e.method == "GET" and "/blobs/" in e.path and e.status < 300
    ]
    assert sorted(gets) == sorted(blobs)  # each blob of the artifact once, nothing else

    everything = json.dumps(
        [get_json(plane, "jobs", "-n", SYSTEM), get_json(plane, "events", "-A"), imported]
    )
    assert catalog_server.token not in everything


class TamperingProxy:
    """Reads through to a registry; every whole blob it serves has its first byte flipped."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.tampered: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _tampering_handler(self))
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _tampering_handler(proxy: TamperingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _serve(self) -> None:
            host, _, port = proxy.upstream.partition(":")
            upstream = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, headers=headers)
                answer = upstream.getresponse()
                data, status = answer.read(), answer.status
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_HEADERS]
                length = answer.getheader("Content-Length")
            finally:
                upstream.close()
            if self.command == "GET" and "/blobs/" in self.path and status == 200 and data:
                data = bytes([data[0] ^ 1]) + data[1:]
                proxy.tampered.append(self.path.rsplit("/", 1)[-1])
            self.send_response(status)
            for key, value in kept:
                self.send_header(key, value)
            self.send_header("Content-Length", (length or "0") if self.command == "HEAD"
                             else str(len(data)))  # fmt: skip
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = _serve  # noqa: N815

    return Handler


@pytest.fixture(scope="module")
def tampered_catalog(
    control_plane: ControlPlane,
    e2e_registry: RestartableRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CatalogServerProcess, TamperingProxy]]:
    proxy = TamperingProxy(e2e_registry.host)
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    try:
        with run_catalog_server(
            tmp_path_factory.mktemp("tampered-catalog"), kube, control_plane.kubeconfig,
            proxy.host, name="catalog-tampered",
        ) as server:  # fmt: skip
            yield server, proxy
    finally:
        proxy.close()


def test_blobs_that_are_not_their_digest_fail_the_import_and_tag_nothing(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    ollama_model: object,
    tampered_catalog: tuple[CatalogServerProcess, TamperingProxy],
    cluster_b: ClusterB,
) -> None:
    server, proxy = tampered_catalog
    published = model("smollm2-central", SMOLLM2_URL, None)
    published["metadata"]["labels"] = {"ai.deckhouse.io/catalog": "publish"}
    apply(control_plane, published)
    wait_phase(control_plane, "smollm2-central", None, "Ready", timeout=300)

    plane = cluster_b.plane
    _trust(plane, "tampered", server)
    apply(plane, {
        "apiVersion": "ai.deckhouse.io/v1alpha1", "kind": "ClusterModel",
        "metadata": {"name": "smollm2-imported"},
        "spec": {"source": {"catalog": {"name": "smollm2-central", "sourceName": "tampered"}}},
    })  # fmt: skip
    failed = wait_phase(plane, "smollm2-imported", None, "Ready", "Failed", timeout=300)
    ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
    assert (failed["status"]["phase"], ready["reason"]) == ("Failed", "CatalogDigestMismatch")
    assert proxy.tampered  # the failure is the flipped byte's
    uid = failed["metadata"]["uid"]
    code, _, _ = manifest(cluster_b.registry.url, "ai-models/clustermodel/smollm2-imported", uid)
    assert code == 404
