"""Consumption on the real node (issue 9): workloads annotated with ``ai.deckhouse.io/model`` /
``ai.deckhouse.io/clustermodel`` get their models from the chart's webhook (served by the
controller Deployment's pod, called by the API server through its Service's endpoint:
``--enable-aggregator-routing``) and the delivery DaemonSet (hostPort on the node address,
CNI ``portmap``), with files read back from inside the consuming containers. One test adds a
second node (``second_node``: its own network namespace, delivery pod and cache).

This module sorts after ``test_host_restore.py`` (which needs a host without a node) and must
run its tests in order: the first consumption finds the node cache cold, the last one stops the
webhook.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import JSON, SYSTEM, get_json, wait_for
from tests.e2e.helpers import apply, manifest, model, namespace, registry_get, wait_phase
from tests.ground.controlplane import ControlPlane
from tests.ground.images import WORKER_IMAGE
from tests.ground.models import RealModels
from tests.ground.netns_node import SECOND_NODE_TAINT
from tests.ground.node import RealNode
from tests.ground.registry import Registry
from tests.ground.workloads import run_workload_controllers
from tests.node.conftest import REGISTRY_AUTH_SECRET, REGISTRY_USER
from tests.node.consumers import (
    BLOB_METRICS,
    DELIVERY,
    MINILM_URL,
    blob_delta,
    consumer_pod,
    delivery_ip,
    deployment,
    file_digests,
    forged_pod,
    metrics,
    phase,
    pods_of,
    running,
    source_digests,
)
from tests.node.test_leader_failover import controller_pods, ready

NS_A, NS_B = "consume-a", "consume-b"


@dataclass(frozen=True)
class Consumption:
    delivery_ip: str


@pytest.fixture(scope="module")
def consumption(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_config: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Consumption]:
    """One controller replica (the webhook and the gates) and the delivery pod, both Ready, the
    webhook Service with the controller pod as its endpoint and the caBundle written."""
    plane = control_plane
    for ns in (NS_A, NS_B):
        namespace(plane, ns)
    plane.kubectl_run("scale", "deployment", "ai-models-controller", "-n", SYSTEM, "--replicas=1")
    with run_workload_controllers(plane, tmp_path_factory.mktemp("consumption-workloads")):

        def up() -> str:
            pods = controller_pods(plane)
            delivery = delivery_ip(plane, real_node.name)
            hook = get_json(plane, "mutatingwebhookconfiguration", "ai-models-webhook")
            bundles = [w["clientConfig"].get("caBundle") for w in hook.get("webhooks", [])]
            up = len(pods) == 1 and ready(pods[0]) and bundles and all(bundles)
            return delivery if up else ""

        yield Consumption(wait_for(up, 240, every=1))
        plane.kubectl_run(
            "scale", "deployment", "ai-models-controller", "-n", SYSTEM, "--replicas=0"
        )
        wait_for(lambda: not controller_pods(plane), 60, every=1)
    # The chart's replica count again, for the modules after this one (no pod starts now).
    plane.kubectl_run("scale", "deployment", "ai-models-controller", "-n", SYSTEM, "--replicas=2")


def ready_model(plane: ControlPlane, name: str, ns: str | None) -> JSON:
    obj = wait_phase(plane, name, ns, "Ready", "Failed", timeout=240)
    assert obj["status"]["phase"] == "Ready", json.dumps(obj["status"])
    return obj


@pytest.fixture(scope="module")
def models(control_plane: ControlPlane, consumption: Consumption) -> dict[str, JSON]:
    """A Model of namespace A and a ClusterModel, both MiniLM from the Hub emulator."""
    apply(control_plane, model("minilm", MINILM_URL, NS_A))
    apply(control_plane, model("minilm-shared", MINILM_URL, None))
    return {
        "model": ready_model(control_plane, "minilm", NS_A),
        "cluster": ready_model(control_plane, "minilm-shared", None),
    }


def test_a_deployment_gets_its_ready_model_byte_identical_and_the_node_fetches_it_once(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_registry: Registry,
    real_models: RealModels,
    consumption: Consumption,
    models: dict[str, JSON],
) -> None:
    plane, obj = control_plane, models["model"]
    digest = obj["status"]["artifact"]["digest"]
    code, body, registry_digest = manifest(
        node_registry.url, f"ai-models/model/{NS_A}/minilm", obj["metadata"]["uid"]
    )
    assert (code, registry_digest) == (200, digest)
    before = metrics(consumption.delivery_ip)
    apply(plane, deployment("web", NS_A, real_node.name, replicas=2, model="minilm"))
    pods = wait_for(lambda: running(pods_of(plane, NS_A, "web"), 2), 180, every=1)
    after = metrics(consumption.delivery_ip)
    for pod in pods:
        spec = pod["spec"]
        init = spec["initContainers"][0]
        assert init["name"] == "ai-models-materialize"
        assert init["image"] == WORKER_IMAGE
        volume = next(v for v in spec["volumes"] if v["name"] == "ai-models-model-minilm")
        assert volume == {"name": "ai-models-model-minilm", "emptyDir": {}}
        app = spec["containers"][0]
        assert {"name": "AI_MODELS_DIR", "value": "/models"} in app["env"]
        assert {"name": "AI_MODEL_PATH", "value": "/models/minilm"} in app["env"]
        assert {
            "name": "ai-models-model-minilm",
            "mountPath": "/models/minilm",
            "readOnly": True,
        } in app["volumeMounts"]
        annotations = pod["metadata"]["annotations"]
        assert json.loads(annotations["ai.deckhouse.io/model-digests"]) == [
            {"kind": "Model", "name": "minilm", "digest": digest}
        ]
        assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        # Read from inside the running container: every published file, byte-identical.
        files = file_digests(plane, pod)
        expected = source_digests(real_models.minilm_dir, body)
        assert sorted(files) == ["minilm"]
        assert sorted(files["minilm"]) == sorted(expected)
        assert files == {"minilm": expected}
    # The node's delivery pod fetched each file blob from the registry once for the two pods
    # (materialize needs no config blob), and served the manifest and every blob to each.
    layers, manifest_size = blob_sizes(node_registry, body, digest)
    assert blob_delta(before, after) == {
        "registry_bytes_total": layers,
        "cache_misses_total": len(body["layers"]),
        "served_bytes_total": 2 * (layers + manifest_size),
    }


def blob_sizes(registry: Registry, body: JSON, digest: str) -> tuple[int, int]:
    """The layers' total size and the manifest's as the registry serves it (Model minilm)."""
    url = f"{registry.url}/v2/ai-models/model/{NS_A}/minilm/manifests/{digest}"
    _, _, raw = registry_get(url)
    return sum(layer["size"] for layer in body["layers"]), len(raw)


def finished(plane: ControlPlane, ns: str, name: str) -> bool:
    return phase(plane, ns, name) in ("Succeeded", "Failed")


def events_of(plane: ControlPlane, ns: str, pod: str, reason: str) -> list[str]:
    selector = f"involvedObject.name={pod},reason={reason}"
    items = get_json(plane, "events", "-n", ns, "--field-selector", selector).get("items", [])
    return [str(e["message"]) for e in items]


def test_a_deployment_created_before_its_model_waits_gated_then_runs_its_digest(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_registry: Registry,
    real_models: RealModels,
    consumption: Consumption,
    models: dict[str, JSON],
) -> None:
    plane = control_plane
    apply(plane, deployment("late", NS_A, real_node.name, model="later"))
    pod = wait_for(lambda: next(iter(pods_of(plane, NS_A, "late")), None), 60)
    name = pod["metadata"]["name"]
    assert pod["spec"]["schedulingGates"] == [{"name": "ai.deckhouse.io/model-ready"}]
    assert pod["metadata"]["labels"]["ai.deckhouse.io/model-gated"] == "true"
    waiting = f"waiting for Model {NS_A}/later: not found"
    assert pod["metadata"]["annotations"]["ai.deckhouse.io/model-waiting"] == waiting
    assert wait_for(lambda: events_of(plane, NS_A, name, "ModelNotReady"), 60) == [waiting]
    assert "nodeName" not in pod["spec"]
    apply(plane, model("later", MINILM_URL, NS_A))
    obj = ready_model(plane, "later", NS_A)
    pods = wait_for(lambda: running(pods_of(plane, NS_A, "late"), 1), 120, every=1)
    released = pods[0]
    assert released["metadata"]["name"] == name  # the same pod, its gate lifted
    assert released["spec"].get("schedulingGates") is None
    annotations = released["metadata"]["annotations"]
    assert "ai.deckhouse.io/model-waiting" not in annotations
    assert json.loads(annotations["ai.deckhouse.io/model-digests"]) == [
        {"kind": "Model", "name": "later", "digest": obj["status"]["artifact"]["digest"]}
    ]
    code, body, _ = manifest(
        node_registry.url, f"ai-models/model/{NS_A}/later", obj["metadata"]["uid"]
    )
    assert code == 200
    assert file_digests(plane, released) == {"later": source_digests(real_models.minilm_dir, body)}


def test_a_model_of_another_namespace_is_refused_by_the_delivery_endpoint(
    control_plane: ControlPlane,
    real_node: RealNode,
    consumption: Consumption,
    models: dict[str, JSON],
) -> None:
    """A pod of namespace B that writes its own materialize init container (the webhook leaves
    a pod that has one as it is) asking for namespace A's repository with A's digest."""
    plane, digest = control_plane, models["model"]["status"]["artifact"]["digest"]
    pod = forged_pod("intruder", NS_B, real_node.name, digest, pod_namespace=NS_A)
    apply(plane, pod)
    assert wait_for(lambda: finished(plane, NS_B, "intruder"), 120)
    status = get_json(plane, "pod", "intruder", "-n", NS_B)["status"]
    assert status["phase"] == "Failed"
    terminated = status["initContainerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 2
    report = json.loads(terminated["message"].strip().splitlines()[-1])
    assert report["reason"] == "DeliveryForbidden"
    assert (
        f"refused Model minilm@{digest}: Model {NS_A}/minilm is not in the pod's namespace "
        f"{NS_B}: a pod consumes Models of its own namespace and ClusterModels only"
    ) in report["message"]
    assert "running" not in status["containerStatuses"][0]["state"]


def test_a_cluster_model_is_consumed_from_two_namespaces(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_registry: Registry,
    real_models: RealModels,
    consumption: Consumption,
    models: dict[str, JSON],
) -> None:
    plane, obj = control_plane, models["cluster"]
    code, body, digest = manifest(
        node_registry.url, "ai-models/clustermodel/minilm-shared", obj["metadata"]["uid"]
    )
    assert (code, digest) == (200, obj["status"]["artifact"]["digest"])
    for ns in (NS_A, NS_B):
        apply(plane, consumer_pod("shared", ns, real_node.name, cluster_model="minilm-shared"))
    for ns in (NS_A, NS_B):
        assert wait_for(functools.partial(finished, plane, ns, "shared"), 120)
        pod = get_json(plane, "pod", "shared", "-n", ns)
        assert pod["status"]["phase"] == "Succeeded", json.dumps(pod["status"])
        assert json.loads(pod["metadata"]["annotations"]["ai.deckhouse.io/model-digests"]) == [
            {"kind": "ClusterModel", "name": "minilm-shared", "digest": digest}
        ]
        assert file_digests(plane, pod) == {
            "minilm-shared": source_digests(real_models.minilm_dir, body)
        }


def test_no_secret_in_workload_namespaces_and_no_registry_credential_in_a_consuming_pod(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_registry: Registry,
    node_registry_password: str,
    consumption: Consumption,
    models: dict[str, JSON],
) -> None:
    plane = control_plane
    for ns in (NS_A, NS_B):
        listed = plane.kubectl_run("get", "secrets", "-n", ns, "-o", "name")
        assert (listed.returncode, listed.stdout) == (0, "")
    pod = pods_of(plane, NS_A, "web")[0]
    dumped = plane.kubectl_run("get", "pod", pod["metadata"]["name"], "-n", NS_A, "-o", "yaml")
    assert dumped.returncode == 0, dumped.stderr
    # Nothing in the pod names or opens the registry: not its address, not its credentials
    # (which the delivery pod of the system namespace does mount), no Secret of any kind.
    delivery = get_json(plane, "pods", "-n", SYSTEM, "-l", DELIVERY)["items"][0]
    volumes = delivery["spec"]["volumes"]
    mounted = {v["name"]: v.get("secret", {}).get("secretName") for v in volumes}
    assert mounted["registry-auth"] == REGISTRY_AUTH_SECRET
    basic = base64.b64encode(f"{REGISTRY_USER}:{node_registry_password}".encode()).decode()
    for leak in (node_registry_password, basic, REGISTRY_AUTH_SECRET, "dockerconfigjson"):
        assert leak not in dumped.stdout
    port = node_registry.host.rsplit(":", 1)[1]
    assert f":{port}" not in dumped.stdout
    spec = pod["spec"]
    assert [v["name"] for v in spec["volumes"] if "secret" in v] == []
    for container in [*spec["initContainers"], *spec["containers"]]:
        assert "envFrom" not in container
        assert [
            e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
        ] == []
    token = next(v for v in spec["volumes"] if v["name"] == "ai-models-token")
    assert token["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "ai-models-delivery", "expirationSeconds": 600,
                                 "path": "token"}}
    ]  # fmt: skip


def test_a_pod_on_a_second_node_gets_the_model_through_its_own_delivery_pod_and_cache(
    control_plane: ControlPlane,
    second_node: RealNode,
    node_registry: Registry,
    real_models: RealModels,
    consumption: Consumption,
    models: dict[str, JSON],
) -> None:
    """The first node's cache holds Model minilm (the first test's two pods fetched each layer
    once); a pod of it on the second node gets the same files through that node's delivery pod,
    which fetches each layer from the registry itself, while the first node's counters stay."""
    plane, obj = control_plane, models["model"]
    digest = obj["status"]["artifact"]["digest"]
    code, body, _ = manifest(
        node_registry.url, f"ai-models/model/{NS_A}/minilm", obj["metadata"]["uid"]
    )
    assert code == 200
    second_ip = wait_for(lambda: delivery_ip(plane, second_node.name), 120, every=1)
    assert second_ip != consumption.delivery_ip
    first_before, before = metrics(consumption.delivery_ip), metrics(second_ip)
    pod = consumer_pod("elsewhere", NS_A, second_node.name, model="minilm")
    pod["spec"]["tolerations"] = [{"key": SECOND_NODE_TAINT, "operator": "Exists"}]
    apply(plane, pod)
    assert wait_for(functools.partial(finished, plane, NS_A, "elsewhere"), 120)
    done = get_json(plane, "pod", "elsewhere", "-n", NS_A)
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"])
    assert done["status"]["hostIP"] == second_node.name
    assert file_digests(plane, done) == {"minilm": source_digests(real_models.minilm_dir, body)}
    layers, manifest_size = blob_sizes(node_registry, body, digest)
    assert blob_delta(before, metrics(second_ip)) == {
        "registry_bytes_total": layers,
        "cache_misses_total": len(body["layers"]),
        "served_bytes_total": layers + manifest_size,
    }
    first_after = metrics(consumption.delivery_ip)
    assert blob_delta(first_before, first_after) == dict.fromkeys(BLOB_METRICS, 0.0)


def test_with_the_webhook_down_only_annotated_workloads_are_refused(
    control_plane: ControlPlane,
    real_node: RealNode,
    consumption: Consumption,
    models: dict[str, JSON],
) -> None:
    plane = control_plane
    plane.kubectl_run("scale", "deployment", "ai-models-controller", "-n", SYSTEM, "--replicas=0")
    wait_for(lambda: not controller_pods(plane), 60, every=1)
    apply(plane, deployment("plain", NS_B, real_node.name))
    plain = wait_for(lambda: running(pods_of(plane, NS_B, "plain"), 1), 120, every=1)
    assert "initContainers" not in plain[0]["spec"]
    assert file_digests(plane, plain[0]) == {}
    refused = plane.kubectl_run(
        "apply", "-f", "-", stdin=json.dumps(deployment("wants", NS_B, real_node.name, model="x"))
    )
    print(f"annotated Deployment with the webhook down: {refused.stderr.strip()}")
    assert refused.returncode == 1
    assert (
        'Internal error occurred: failed calling webhook "workloads.ai-models.deckhouse.io"'
        in refused.stderr
    ), refused.stderr
    assert get_json(plane, "deployment", "wants", "-n", NS_B) == {}
