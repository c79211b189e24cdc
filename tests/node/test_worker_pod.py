"""The product on a real node: a Model turns Ready through a real pod of the worker image built
from Dockerfile.worker, and that pod runs with the Job template's restrictions in force."""

from __future__ import annotations

import errno
import hashlib
import json
import time

import pytest

from tests.e2e.conftest import JSON, SYSTEM, ControllerProcess, get_json, wait_for
from tests.e2e.helpers import apply, manifest, model, namespace, owned, ready_condition, wait_phase
from tests.ground.controlplane import ControlPlane
from tests.ground.hub import HubEmulator
from tests.ground.images import WORKER_IMAGE
from tests.ground.models import RealModels
from tests.ground.node import RealNode
from tests.ground.registry import Registry
from tests.node.conftest import TIMINGS

MINILM_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
NS = "node-team"
PROBE = """
import json
import time
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status") if ":\\t" in line)
fields = ("Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "Seccomp", "NoNewPrivs")
report = {name: " ".join(status[name].split()) for name in fields}
try:
    open("/written-by-probe", "w").close()
    report["rootWrite"] = "ok"
except OSError as error:
    report["rootWrite"] = error.errno
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def prepared(
    control_plane: ControlPlane,
    node_controller: ControllerProcess,
    node_hub: HubEmulator,
) -> JSON:
    namespace(control_plane, NS)
    started = time.monotonic()
    apply(control_plane, model("minilm", MINILM_URL, NS))
    obj = wait_phase(control_plane, "minilm", NS, "Ready", "Failed", timeout=300)
    TIMINGS["Model applied to Ready"] = time.monotonic() - started
    assert obj["status"]["phase"] == "Ready", (
        json.dumps(obj["status"]) + "\n" + node_controller.output()[-3000:]
    )
    return obj


def test_model_goes_ready_through_a_real_worker_pod(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_registry: Registry,
    prepared: JSON,
    real_models: RealModels,
) -> None:
    uid = prepared["metadata"]["uid"]
    status = prepared["status"]
    code, body, digest = manifest(node_registry.url, f"ai-models/model/{NS}/minilm", uid)
    assert code == 200
    assert status["artifact"]["digest"] == digest
    weights = next(
        layer
        for layer in body["layers"]
        if layer["annotations"]["org.cncf.model.filepath"] == "model.safetensors"
    )
    expected = hashlib.sha256((real_models.minilm_dir / "model.safetensors").read_bytes())
    assert weights["digest"] == f"sha256:{expected.hexdigest()}"
    assert status["resolved"]["architecture"] == "BertModel"
    assert ready_condition(prepared)["reason"] == "Published"
    # The pod ran on the real node, from the image built from Dockerfile.worker, and exited 0.
    pods = owned(control_plane, "pods", uid)
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"] == real_node.name
    container = pod["status"]["containerStatuses"][0]
    assert container["image"] == f"docker.io/library/{WORKER_IMAGE}"
    assert container["state"]["terminated"]["exitCode"] == 0
    # kubectl logs goes API server → kubelet → containerd's log file of the container.
    logs = control_plane.kubectl_run("logs", f"job/prepare-{uid}", "-n", SYSTEM)
    assert logs.returncode == 0, logs.stderr
    # The worker's lines for people (the chart's default worker.logFormat=text).
    lines = logs.stdout.splitlines()
    # The transfer stage always reports (its first line at 0%); whether model.safetensors is
    # sent or found already in the registry depends on what other tests prepared before.
    assert any(" info  transfer " in line and " MiB" in line for line in lines), logs.stdout
    assert any(" info  published reference=" in line for line in lines), logs.stdout


def test_worker_pod_runs_restricted_as_seen_from_inside(
    control_plane: ControlPlane, real_node: RealNode, prepared: JSON
) -> None:
    """The Job's own pod template, its command replaced by a probe that reads /proc/self/status."""
    uid = prepared["metadata"]["uid"]
    job = get_json(control_plane, "job", f"prepare-{uid}", "-n", SYSTEM)
    spec = job["spec"]["template"]["spec"]
    spec["containers"][0]["command"] = ["python", "-c", PROBE]
    spec["containers"][0]["args"] = []
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "worker-probe", "namespace": SYSTEM},
        "spec": spec,
    }
    apply(control_plane, pod)

    def finished() -> str:
        got = get_json(control_plane, "pod", "worker-probe", "-n", SYSTEM)
        phase: str = (got.get("status") or {}).get("phase", "")
        return phase if phase in ("Succeeded", "Failed") else ""

    assert wait_for(finished, 120) == "Succeeded"
    logs = control_plane.kubectl_run("logs", "worker-probe", "-n", SYSTEM)
    assert logs.returncode == 0, logs.stderr
    report = json.loads(logs.stdout.strip().splitlines()[-1])
    assert report == {
        "Uid": "65532 65532 65532 65532",
        "Gid": "65532 65532 65532 65532",
        "CapEff": "0000000000000000",
        "CapPrm": "0000000000000000",
        "CapBnd": "0000000000000000",
        "Seccomp": "2",
        "NoNewPrivs": "1",
        "rootWrite": errno.EROFS,
    }
    control_plane.kubectl_run("delete", "pod", "worker-probe", "-n", SYSTEM, "--wait=false")
