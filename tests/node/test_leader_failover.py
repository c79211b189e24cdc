"""The chart's controller Deployment on the real node, from the image built from
Dockerfile.controller: two replicas reach the API server from their pods (the ClusterIP is
forwarded to it; there is no kube-proxy), one holds the Lease. The leader is killed (SIGKILL to
its container's task, its pod deleted) during a preparation; another replica takes the Lease and
the Model still turns Ready with what is in the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import JSON, SYSTEM, get_json, wait_for
from tests.e2e.helpers import apply, manifest, model, namespace, wait_phase
from tests.ground.controlplane import ControlPlane
from tests.ground.hub import HubEmulator
from tests.ground.images import CONTROLLER_IMAGE
from tests.ground.node import RealNode
from tests.ground.registry import Registry
from tests.ground.workloads import run_workload_controllers

MINILM_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
NS = "node-failover"
SELECTOR = "app.kubernetes.io/name=ai-models-controller"


def controller_pods(plane: ControlPlane) -> list[JSON]:
    items: list[JSON] = get_json(plane, "pods", "-n", SYSTEM, "-l", SELECTOR).get("items", [])
    return items


def ready(pod: JSON) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def lease_holder(plane: ControlPlane) -> str:
    lease = get_json(plane, "lease", "ai-models-controller", "-n", SYSTEM)
    holder: str = (lease.get("spec") or {}).get("holderIdentity") or ""
    return holder


@pytest.fixture(scope="module")
def deployment(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_config: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[JSON]]:
    with run_workload_controllers(control_plane, tmp_path_factory.mktemp("workloads")):

        def both_ready() -> list[JSON]:
            pods = controller_pods(control_plane)
            return pods if len(pods) == 2 and all(ready(p) for p in pods) else []

        yield wait_for(both_ready, 180, every=1)
        control_plane.kubectl_run(
            "scale", "deployment", "ai-models-controller", "-n", SYSTEM, "--replicas=0"
        )
        wait_for(lambda: not controller_pods(control_plane), 60, every=1)


def test_leader_killed_mid_preparation_the_other_replica_finishes_it(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_hub: HubEmulator,
    node_registry: Registry,
    deployment: list[JSON],
) -> None:
    names = {p["metadata"]["name"] for p in deployment}
    for pod in deployment:
        assert pod["spec"]["nodeName"] == real_node.name
        assert (
            pod["status"]["containerStatuses"][0]["image"]
            == f"docker.io/library/{CONTROLLER_IMAGE}"
        )
    leader = wait_for(
        lambda: lease_holder(control_plane) in names and lease_holder(control_plane), 60
    )
    namespace(control_plane, NS)
    node_hub.bytes_per_second = 8 * 1024 * 1024  # ~11 s for the weights: the kill lands mid-way
    try:
        apply(control_plane, model("minilm", MINILM_URL, NS))
        during = wait_phase(control_plane, "minilm", NS, "Publishing", "Ready", "Failed")
        assert during["status"]["phase"] == "Publishing", json.dumps(during["status"])
        pod = next(p for p in deployment if p["metadata"]["name"] == leader)
        container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
        killed = real_node.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)
        assert killed.returncode == 0, killed.stderr
        # Gone for good: without its pod the kubelet cannot restart it under the same identity.
        control_plane.kubectl_run(
            "delete", "pod", leader, "-n", SYSTEM, "--force", "--grace-period=0", "--wait=false"
        )

        def taken_over() -> str:
            holder = lease_holder(control_plane)
            live = {p["metadata"]["name"] for p in controller_pods(control_plane)}
            return holder if holder != leader and holder in live else ""

        assert wait_for(taken_over, 90, every=0.5)
        obj = wait_phase(control_plane, "minilm", NS, "Ready", "Failed", timeout=240)
    finally:
        node_hub.bytes_per_second = None
    assert obj["status"]["phase"] == "Ready", json.dumps(obj["status"])
    code, _, digest = manifest(
        node_registry.url, f"ai-models/model/{NS}/minilm", obj["metadata"]["uid"]
    )
    assert code == 200
    assert obj["status"]["artifact"]["digest"] == digest
