"""The delivery endpoint and node cache on real parts: the real kube-apiserver (TokenReview of
real pod-bound projected tokens, pods, Models with a Ready status), the real docker-registry
behind a counting proxy, ``ai-models-worker materialize-pod`` as the init container runs it.

The endpoint runs with the credentials of a ServiceAccount bound to exactly the ClusterRole the
chart gives it (tokenreviews create; pods, models, clustermodels get), so its RBAC is tested
too."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from controller.kube import CLUSTER_MODELS, MODELS, PODS, KubeClient, Resource, load_api_client
from controller.naming import ObjectKey, repository
from delivery.cli import build_parser, build_server
from delivery.server import DeliveryServer
from tests.ground.controlplane import ControlPlane
from tests.ground.registry import Registry
from tests.integration.server_setup import ACCOUNTS, account_kubeconfig, push_artifact
from tests.integration.worker_cli_helpers import (
    CountingProxy,
    WorkerRun,
    finish,
    run_worker,
    start_worker,
    worker_env,
)
from tests.unit.worker.oci.artifacts import MANIFEST, Layer, manifest_document, sha256, tree

pytestmark = pytest.mark.integration

NS_A, NS_B, SYSTEM = "delivery-a", "delivery-b", "delivery-system"
PREFIX = "ai-models"
AUDIENCE = "ai-models-delivery"
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
DELIVERY_RULES = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    {"apiGroups": ["ai.deckhouse.io"], "resources": ["models", "clustermodels"], "verbs": ["get"]},
]


@dataclass
class Ground:
    kube: KubeClient
    plane: ControlPlane
    registry: Registry
    proxy: CountingProxy
    server: DeliveryServer
    work: Path
    delivery_kubeconfig: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def model(self, kind: str, namespace: str, name: str, layers: list[Layer]) -> str:
        """A Model (or ClusterModel) whose artifact is in the registry and status Ready."""
        res = MODELS if kind == "Model" else CLUSTER_MODELS
        meta = {"name": name, **({"namespace": namespace} if kind == "Model" else {})}
        body = {
            "apiVersion": "ai.deckhouse.io/v1alpha1",
            "kind": kind,
            "metadata": meta,
            "spec": {"source": {"url": f"https://huggingface.co/example/{name}"}},
        }
        created = self.kube.create(res, body, namespace if kind == "Model" else None)
        key = ObjectKey("Model" if kind == "Model" else "ClusterModel", namespace, name)
        repo = repository(PREFIX, key, created["metadata"]["uid"])
        document = manifest_document(self.work / "blobs", layers)
        digest = push_artifact(self.registry, repo, document, [b"{}", *(x.data for x in layers)])
        status = {"phase": "Ready", "artifact": {"kind": "OCI", "digest": digest}}
        self.kube.merge_patch(res, name, {"status": status}, namespace or None, sub="status")
        return digest

    def pod(
        self, namespace: str, name: str, annotations: dict[str, str], node: str | None = None
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": "app", "image": "example.invalid/app:1"}]}
        if node is not None:
            spec["nodeName"] = node  # bound as the scheduler binds it (no kubelet runs it here)
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": spec,
        }
        return self.kube.create(PODS, body, namespace)

    def token(self, pod: dict[str, Any], audience: str = AUDIENCE) -> str:
        """A projected token bound to the pod, as the kubelet mints it."""
        meta = pod["metadata"]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience],
                "expirationSeconds": 600,
                "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"],
                },
            },
        }  # fmt: skip
        path = ACCOUNTS.path(meta["namespace"], "default", "token")
        return str(self.kube.request("POST", path, body=request)["status"]["token"])

    def materialize(
        self, token: str, digests: list[dict[str, str]], out: Path, **env: str
    ) -> WorkerRun:
        return finish(self.start_materialize(token, digests, out, **env), timeout=120)

    def start_materialize(
        self,
        token: str,
        digests: list[dict[str, str]],
        out: Path,
        endpoint: str | None = None,
        **env: str,
    ) -> Any:
        out.mkdir(parents=True, exist_ok=True)
        token_file, digests_file = out.with_suffix(".token"), out.with_suffix(".digests")
        token_file.write_text(token)
        digests_file.write_text(json.dumps(digests))
        args = ["materialize-pod", "--digests", str(digests_file), "--token", str(token_file),
                "--endpoint", endpoint or self.endpoint, "--to", str(out)]  # fmt: skip
        return start_worker(args, worker_env(out.parent, **env))

    def blob_gets(self, digest: str) -> int:
        """GETs of the blob that reached the registry."""
        return sum(1 for e in self.proxy.exchanges if e.method == "GET" and e.path.endswith(digest))

    def metric(self, name: str) -> float:
        return self.server.metrics.value(name)


def _wait(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def start_delivery(
    ground_work: Path, kubeconfig: Path, upstream: str, size: str, node: str = ""
) -> DeliveryServer:
    """An endpoint as the DaemonSet runs it on one node: its own cache directory."""
    name = f"{node or 'node'}-{size}"
    config = ground_work / f"config-{name}.json"
    config.write_text(json.dumps({
        "systemNamespace": SYSTEM,
        "registry": {"host": upstream, "prefix": PREFIX, "insecure": True},
    }))  # fmt: skip
    args = build_parser().parse_args([
        "--config", str(config), "--kubeconfig", str(kubeconfig), "--bind-address", "127.0.0.1",
        "--port", "0", "--cache-dir", str(ground_work / f"cache-{name}"), "--cache-size", size,
    ])  # fmt: skip
    server = build_server(args, KubeClient(load_api_client(str(kubeconfig))))
    server.start()
    return server


@pytest.fixture(scope="module")
def ground(
    crds: ControlPlane, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ground]:
    work = tmp_path_factory.mktemp("delivery")
    kube = KubeClient(load_api_client(str(crds.kubeconfig)))
    for namespace in (NS_A, NS_B, SYSTEM):
        kube.create(NAMESPACES, {"metadata": {"name": namespace}})
    for namespace in (NS_A, NS_B):
        _wait(lambda ns=namespace: kube.get(ACCOUNTS, "default", ns) is not None)
    kubeconfig = account_kubeconfig(
        kube, crds, work / "delivery.kubeconfig", (SYSTEM, "delivery"), cluster_rules=DELIVERY_RULES
    )
    proxy = CountingProxy(registry.host)
    server = start_delivery(work, kubeconfig, proxy.host, "1Gi")
    try:
        yield Ground(kube, crds, registry, proxy, server, work, kubeconfig)
    finally:
        server.shutdown()
        server.server_close()
        proxy.close()


def _layers(tag: str, big: int = 9 << 20) -> list[Layer]:
    """A weight larger than two cache chunks, a config, a nested file, and two identical docs."""
    return [
        Layer("model.safetensors", os.urandom(big)),
        Layer("config.json", json.dumps({"model": tag}).encode()),
        Layer("tokenizer/vocab.txt", f"{tag}\n".encode() * 1000),
        Layer("LICENSE", b"Apache-2.0\n"),
        Layer("docs/LICENSE", b"Apache-2.0\n"),
    ]


def _digests(kind: str, name: str, digest: str) -> list[dict[str, str]]:
    return [{"kind": kind, "name": name, "digest": digest}]


def _annotations(key: str, name: str, digests: list[dict[str, str]]) -> dict[str, str]:
    return {f"ai.deckhouse.io/{key}": name, "ai.deckhouse.io/model-digests": json.dumps(digests)}


def _get(ground: Ground, path: str, token: str | None, **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.setdefault("Accept", MANIFEST)
    return requests.get(f"{ground.endpoint}{path}", headers=headers, timeout=30)


def _error(response: requests.Response) -> tuple[str, str]:
    error = response.json()["errors"][0]
    return error["code"], error["message"]


# ---- consuming --------------------------------------------------------------------------------


def test_materialize_pod_through_the_delivery_writes_byte_identical_files(
    ground: Ground, tmp_path: Path
) -> None:
    layers = _layers("llama")
    digest = ground.model("Model", NS_A, "llama", layers)
    digests = _digests("Model", "llama", digest)
    pod = ground.pod(NS_A, "consumer", _annotations("model", "llama", digests))
    result = ground.materialize(ground.token(pod), digests, tmp_path / "models").result()
    assert tree(tmp_path / "models" / "llama") == {x.path: x.data for x in layers}
    assert result["models"] == [
        {"directory": str(tmp_path / "models" / "llama"), "digest": digest, "files": 5}
    ]
    assert ground.blob_gets(sha256(layers[0].data)) == 1


def test_a_model_of_another_namespace_is_refused_with_the_reason(
    ground: Ground, tmp_path: Path
) -> None:
    digest = ground.model("Model", NS_A, "private", _layers("private", 1 << 10))
    digests = _digests("Model", "private", digest)
    pod = ground.pod(NS_B, "intruder", _annotations("model", "private", digests))
    token = ground.token(pod)
    # The pod names the model of its own namespace: there is none.
    failure = ground.materialize(token, digests, tmp_path / "own").failure(2)
    assert failure["reason"] == "DeliveryForbidden"
    assert "Model delivery-b/private does not exist" in failure["message"]
    # It asks for the other namespace's repository (POD_NAMESPACE forged): refused as such.
    forged = ground.materialize(token, digests, tmp_path / "forged", POD_NAMESPACE=NS_A)
    failure = forged.failure(2)
    assert failure["reason"] == "DeliveryForbidden"
    assert (
        "Model delivery-a/private is not in the pod's namespace delivery-b: a pod consumes "
        "Models of its own namespace and ClusterModels only" in failure["message"]
    )
    assert not (tmp_path / "forged" / "private").exists()  # refused before any write
    refused = _get(ground, f"/v2/model/{NS_A}/private/manifests/{digest}", token)
    assert refused.status_code == 403
    assert _error(refused)[0] == "DENIED"


def test_a_clustermodel_is_delivered_to_pods_of_any_namespace(
    ground: Ground, tmp_path: Path
) -> None:
    layers = _layers("shared", 1 << 20)
    digest = ground.model("ClusterModel", "", "shared", layers)
    digests = _digests("ClusterModel", "shared", digest)
    for namespace in (NS_A, NS_B):
        pod = ground.pod(namespace, "shared-user", _annotations("clustermodel", "shared", digests))
        out = tmp_path / namespace
        ground.materialize(ground.token(pod), digests, out).result()
        assert tree(out / "shared") == {x.path: x.data for x in layers}


def test_a_stolen_token_fetches_only_what_its_pod_references(ground: Ground) -> None:
    digest = ground.model("Model", NS_A, "secret", _layers("secret", 1 << 10))
    other = ground.model("Model", NS_A, "other", _layers("other", 1 << 10))
    owner = ground.pod(
        NS_A, "owner", _annotations("model", "secret", _digests("Model", "secret", digest))
    )
    bystander = ground.pod(NS_A, "bystander", {})
    path = f"/v2/model/{NS_A}/secret/manifests/{digest}"
    assert _get(ground, path, ground.token(owner)).status_code == 200
    refused = _get(ground, path, ground.token(bystander))
    assert refused.status_code == 403
    assert _error(refused) == (
        "DENIED",
        f"pod {NS_A}/bystander does not reference Model {NS_A}/secret "
        "(annotation ai.deckhouse.io/model)",
    )
    # The owner's token does not open a model its pod does not name.
    refused = _get(ground, f"/v2/model/{NS_A}/other/manifests/{other}", ground.token(owner))
    assert refused.status_code == 403
    assert _error(refused)[1] == (
        f"pod {NS_A}/owner does not reference Model {NS_A}/other (annotation ai.deckhouse.io/model)"
    )
    # Nor a blob that is not part of its model's manifest.
    blob = sha256(b"Apache-2.0\n")  # the LICENSE layer of its own model
    foreign = sha256(b"not in the manifest")
    response = _get(ground, f"/v2/model/{NS_A}/secret/blobs/{foreign}", ground.token(owner))
    assert response.status_code == 403
    assert _error(response)[1].startswith(f"blob {foreign} is not part of the manifest")
    assert _get(ground, f"/v2/model/{NS_A}/secret/blobs/{blob}", ground.token(owner)).ok


def test_tokens_of_another_audience_expired_or_missing_are_401(
    ground: Ground, tmp_path: Path
) -> None:
    digest = ground.model("Model", NS_A, "guarded", _layers("guarded", 1 << 10))
    digests = _digests("Model", "guarded", digest)
    pod = ground.pod(NS_A, "guarded-user", _annotations("model", "guarded", digests))
    path = f"/v2/model/{NS_A}/guarded/manifests/{digest}"
    wrong = ground.token(pod, audience="https://kubernetes.default.svc.cluster.local")
    answer = _get(ground, path, wrong)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert _error(answer)[0] == "UNAUTHORIZED"
    failure = ground.materialize(wrong, digests, tmp_path / "wrong").failure(2)
    assert failure["reason"] == "DeliveryUnauthorized"
    assert "token rejected by the API server" in failure["message"]
    assert wrong not in failure["message"]
    expired = _expired_copy(ground.token(pod), ground.plane.work_dir / "pki" / "sa.key")
    answer = _get(ground, path, expired)
    assert answer.status_code == 401
    assert "token rejected by the API server" in _error(answer)[1]
    assert _get(ground, path, None).status_code == 401
    assert _get(ground, path, "not-a-token").status_code == 401
    assert _get(ground, path, ground.token(pod)).status_code == 200


def _expired_copy(token: str, signing_key: Path) -> str:
    """The same claims and key id, expired an hour ago, signed with the cluster's real
    service-account key: only the expiry is wrong."""

    def decode(part: str) -> Any:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header, claims = decode(token.split(".")[0]), decode(token.split(".")[1])
    now = int(time.time())
    claims.update({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})
    signed = f"{encode(json.dumps(header).encode())}.{encode(json.dumps(claims).encode())}"
    key = serialization.load_pem_private_key(signing_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{encode(signature)}"


# ---- the cache --------------------------------------------------------------------------------


def test_two_pods_at_once_get_each_blob_from_the_registry_once(
    ground: Ground, tmp_path: Path
) -> None:
    layers = _layers("popular", 24 << 20)
    digest = ground.model("Model", NS_A, "popular", layers)
    digests = _digests("Model", "popular", digest)
    hits = ground.metric("ai_models_delivery_cache_hits_total")
    runs = []
    for index in range(2):
        pod = ground.pod(NS_A, f"replica-{index}", _annotations("model", "popular", digests))
        runs.append(ground.start_materialize(ground.token(pod), digests, tmp_path / f"r{index}"))
    for index, process in enumerate(runs):
        finish(process, timeout=120).result()
        assert tree(tmp_path / f"r{index}" / "popular") == {x.path: x.data for x in layers}
    for blob in {sha256(x.data) for x in layers} | {sha256(b"{}")}:
        assert ground.blob_gets(blob) <= 1, blob  # "{}" may be cached by an earlier test
    assert ground.blob_gets(sha256(layers[0].data)) == 1
    assert ground.metric("ai_models_delivery_cache_hits_total") - hits >= 4


def test_a_node_fetches_a_blob_once_for_its_pods_and_a_second_node_its_own_copy(
    ground: Ground, tmp_path: Path
) -> None:
    """Two endpoints as the DaemonSet runs them on two nodes (each its own cache directory):
    two pods bound to the first node get each blob from the registry once between them; a pod
    bound to the second node gets its own copy from the registry, through its own node's
    cache, which then serves the next pod of that node from disk."""
    node_2 = start_delivery(ground.work, ground.delivery_kubeconfig, ground.proxy.host, "1Gi",
                            node="node-2")  # fmt: skip
    try:
        layers = _layers("per-node", 12 << 20)
        digest = ground.model("Model", NS_A, "per-node", layers)
        digests = _digests("Model", "per-node", digest)
        endpoints = {"node-1": ground.endpoint, "node-2": f"http://127.0.0.1:{node_2.port}"}
        weight, blobs = sha256(layers[0].data), {sha256(x.data): x.data for x in layers}

        def consume(node: str, names: list[str]) -> None:
            runs = []
            for name in names:
                pod = ground.pod(NS_A, name, _annotations("model", "per-node", digests), node)
                out = tmp_path / name
                runs.append((out, ground.start_materialize(
                    ground.token(pod), digests, out, endpoint=endpoints[node]
                )))  # fmt: skip
            for out, process in runs:
                finish(process, timeout=120).result()
                assert tree(out / "per-node") == {x.path: x.data for x in layers}

        consume("node-1", ["node-1-a", "node-1-b"])
        assert ground.blob_gets(weight) == 1
        assert all(ground.blob_gets(blob) <= 1 for blob in blobs)
        consume("node-2", ["node-2-a"])
        assert ground.blob_gets(weight) == 2  # the second node's own copy
        assert node_2.store.has(weight)
        assert node_2.metrics.value("ai_models_delivery_cache_misses_total") == len(blobs)
        assert node_2.metrics.value("ai_models_delivery_registry_bytes_total") == sum(
            len(data) for data in blobs.values()
        )
        consume("node-2", ["node-2-b"])  # the second node's cache serves it
        assert ground.blob_gets(weight) == 2
        assert node_2.metrics.value("ai_models_delivery_cache_hits_total") == len(blobs)
    finally:
        node_2.shutdown()
        node_2.server_close()


def test_a_blob_corrupted_in_the_cache_is_never_served_and_is_refetched(
    ground: Ground, tmp_path: Path
) -> None:
    layers = _layers("fragile", 9 << 20)
    digest = ground.model("Model", NS_A, "fragile", layers)
    digests = _digests("Model", "fragile", digest)
    pod = ground.pod(NS_A, "fragile-user", _annotations("model", "fragile", digests))
    token = ground.token(pod)
    ground.materialize(token, digests, tmp_path / "first").result()
    weight = sha256(layers[0].data)
    cached = ground.server.store.path(weight)
    _flip_byte(cached, 5 << 20)
    corrupt = ground.metric("ai_models_delivery_cache_corrupt_total")
    # A raw client gets a body cut short (never the full, wrong bytes), and the entry is gone.
    url = f"{ground.endpoint}/v2/model/{NS_A}/fragile/blobs/{weight}"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).content  # noqa: B018
    assert ground.metric("ai_models_delivery_cache_corrupt_total") == corrupt + 1
    assert not cached.exists()
    # Corrupted again after the refetch: materialize-pod retries and gets the right bytes.
    ground.materialize(token, digests, tmp_path / "second").result()
    assert ground.blob_gets(weight) == 2
    _flip_byte(cached, 1)
    ground.materialize(token, digests, tmp_path / "third").result()
    assert tree(tmp_path / "third" / "fragile") == {x.path: x.data for x in layers}
    assert ground.blob_gets(weight) == 3
    assert ground.metric("ai_models_delivery_cache_corrupt_total") == corrupt + 2


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_a_small_budget_evicts_the_least_recently_used_blob(ground: Ground, tmp_path: Path) -> None:
    small = start_delivery(ground.work, ground.delivery_kubeconfig, ground.proxy.host, "12Mi")
    try:
        first, second = _layers("first", 8 << 20), _layers("second", 8 << 20)
        models = {
            "first": ground.model("Model", NS_A, "evict-first", first),
            "second": ground.model("Model", NS_A, "evict-second", second),
        }
        endpoint = f"http://127.0.0.1:{small.port}"
        for name in ("first", "second", "first"):
            digests = _digests("Model", f"evict-{name}", models[name])
            pod = ground.pod(NS_A, f"evict-{name}-{time.monotonic_ns()}",
                             _annotations("model", f"evict-{name}", digests))  # fmt: skip
            out = tmp_path / f"{name}-{time.monotonic_ns()}"
            (out).mkdir()
            (out.with_suffix(".token")).write_text(ground.token(pod))
            (out.with_suffix(".digests")).write_text(json.dumps(digests))
            run_worker(["materialize-pod", "--digests", str(out.with_suffix(".digests")),
                        "--token", str(out.with_suffix(".token")), "--endpoint", endpoint,
                        "--to", str(out)], worker_env(tmp_path), timeout=120).result()  # fmt: skip
        assert small.metrics.value("ai_models_delivery_evictions_total") >= 2
        assert small.metrics.value("ai_models_delivery_cache_bytes") <= 12 << 20
        assert ground.blob_gets(sha256(first[0].data)) == 2  # evicted, fetched again
        assert small.store.has(sha256(first[0].data))
        assert not small.store.has(sha256(second[0].data))
    finally:
        small.shutdown()
        small.server_close()


def test_metrics_and_health_need_no_token(ground: Ground) -> None:
    assert requests.get(f"{ground.endpoint}/healthz", timeout=5).text == "ok\n"
    text = requests.get(f"{ground.endpoint}/metrics", timeout=5).text
    for name in ("registry_bytes_total", "served_bytes_total", "cache_hits_total",
                 "cache_misses_total", "evictions_total"):  # fmt: skip
        assert f"ai_models_delivery_{name} " in text


def test_concurrent_requests_share_one_fetch_in_process(ground: Ground) -> None:
    """Eight raw clients at once for one uncached blob: one registry GET."""
    layers = _layers("burst", 6 << 20)
    digest = ground.model("Model", NS_A, "burst", layers)
    pod = ground.pod(
        NS_A, "burst-user", _annotations("model", "burst", _digests("Model", "burst", digest))
    )
    token = ground.token(pod)
    weight = sha256(layers[0].data)
    bodies: list[bytes] = []

    def fetch() -> None:
        bodies.append(_get(ground, f"/v2/model/{NS_A}/burst/blobs/{weight}", token).content)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bodies == [layers[0].data] * 8
    assert ground.blob_gets(weight) == 1
