"""The chart's RBAC and admission policy on the real API server: the worker's and the
controller's service accounts can do what the product needs and nothing else."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ground.controlplane import ControlPlane
from tests.integration.chart import install

SYSTEM = "d8-ai-models"
WORKER_POD, OTHER_POD = "rbac-worker-pod", "rbac-other-pod"


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "ai-models-worker"}},
        "spec": {
            "serviceAccountName": "ai-models-worker",
            "containers": [{"name": "worker", "image": "ai-models-worker:test"}],
        },
    }


@pytest.fixture(scope="module")
def chart(control_plane: ControlPlane) -> ControlPlane:
    install(control_plane, SYSTEM)
    for name in (WORKER_POD, OTHER_POD):
        created = control_plane.kubectl_run(
            "apply", "-n", SYSTEM, "-f", "-", stdin=json.dumps(pod(name))
        )
        assert created.returncode == 0, created.stderr
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "registry-push"},
        "stringData": {"x": "y"},
    }
    for namespace in (SYSTEM, "default"):
        control_plane.kubectl_run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(secret))
    return control_plane


def kubeconfig_for(
    plane: ControlPlane, tmp: Path, account: str, bound_pod: str | None = None
) -> Path:
    args = ["create", "token", account, "-n", SYSTEM, "--duration=10m"]
    if bound_pod:
        uid = plane.kubectl_run(
            "get", "pod", bound_pod, "-n", SYSTEM, "-o", "jsonpath={.metadata.uid}"
        ).stdout
        args += [
            "--bound-object-kind=Pod",
            f"--bound-object-name={bound_pod}",
            f"--bound-object-uid={uid}",
        ]
    token = plane.kubectl_run(*args)
    assert token.returncode == 0, token.stderr
    return plane.write_kubeconfig(tmp / f"{account}.kubeconfig", {"token": token.stdout.strip()})


@pytest.fixture(scope="module")
def worker(chart: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kubeconfig_for(chart, tmp_path_factory.mktemp("worker"), "ai-models-worker", WORKER_POD)


@pytest.fixture(scope="module")
def controller(chart: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kubeconfig_for(chart, tmp_path_factory.mktemp("controller"), "ai-models-controller")


@dataclass(frozen=True)
class Answer:
    returncode: int
    stderr: str


def patch_pod(plane: ControlPlane, cfg: Path, name: str, metadata: dict[str, Any]) -> Answer:
    """A bare merge PATCH as the worker sends it (kubectl would GET first, which the worker may
    not do)."""
    token = yaml.safe_load(cfg.read_text())["users"][0]["user"]["token"]
    request = urllib.request.Request(
        f"{plane.url}/api/v1/namespaces/{SYSTEM}/pods/{name}",
        data=json.dumps({"metadata": metadata}).encode(),
        method="PATCH",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/merge-patch+json",
        },
    )
    context = ssl.create_default_context(cafile=str(plane.ca_cert))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return Answer(0 if response.status == 200 else response.status, "")
    except urllib.error.HTTPError as error:
        return Answer(error.code, json.loads(error.read()).get("message", ""))


def test_worker_annotates_its_own_pod(chart: ControlPlane, worker: Path) -> None:
    result = patch_pod(
        chart, worker, WORKER_POD, {"annotations": {"ai.deckhouse.io/progress": "7"}}
    )
    assert result.returncode == 0, result.stderr
    got = chart.kubectl_run(
        "get", "pod", WORKER_POD, "-n", SYSTEM, "-o", "jsonpath={.metadata.annotations}"
    )
    assert json.loads(got.stdout)["ai.deckhouse.io/progress"] == "7"


@pytest.mark.parametrize(
    ("target", "metadata", "message"),
    [
        (WORKER_POD, {"labels": {"x": "y"}}, "the worker may not change a pod's labels"),
        (
            WORKER_POD,
            {"annotations": {"example.com/x": "y"}},
            "the worker may only set ai.deckhouse.io/* annotations",
        ),
        (
            OTHER_POD,
            {"annotations": {"ai.deckhouse.io/progress": "9"}},
            "the worker may only annotate its own pod",
        ),
        (
            WORKER_POD,
            {"finalizers": ["example.com/hold"]},
            "the worker may not change a pod's owners or finalizers",
        ),
    ],
)
def test_worker_cannot_change_anything_else_on_pods(
    chart: ControlPlane, worker: Path, target: str, metadata: dict[str, Any], message: str
) -> None:
    result = patch_pod(chart, worker, target, metadata)
    assert result.returncode != 0
    assert "ValidatingAdmissionPolicy 'ai-models-worker-pod-annotations'" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("get", "secret", "registry-push", "-n", SYSTEM),
        ("get", "secret", "registry-push", "-n", "default"),
        ("get", "secrets", "-n", SYSTEM),
        ("get", "pods", "-n", SYSTEM),
        ("get", "models", "-A"),
        ("create", "configmap", "x", "-n", SYSTEM),
    ],
)
def test_worker_is_forbidden_everything_else(
    chart: ControlPlane, worker: Path, args: tuple[str, ...]
) -> None:
    result = chart.kubectl_run(*args, kubeconfig=worker)
    assert result.returncode != 0
    assert 'User "system:serviceaccount:d8-ai-models:ai-models-worker" cannot' in result.stderr


CONTROLLER_CAN = [
    ("list", "models.ai.deckhouse.io", "--all-namespaces", "yes"),
    ("update", "clustermodels.ai.deckhouse.io/status", "", "yes"),
    ("create", "jobs.batch", f"-n={SYSTEM}", "yes"),
    ("delete", "jobs.batch", f"-n={SYSTEM}", "yes"),
    ("create", "secrets", f"-n={SYSTEM}", "yes"),
    ("get", "secrets", "-n=team-a", "yes"),
    ("create", "events", "-n=team-a", "yes"),
    ("update", "leases.coordination.k8s.io", f"-n={SYSTEM}", "yes"),
    ("create", "jobs.batch", "-n=default", "no"),
    ("list", "secrets", "-n=team-a", "no"),
    ("delete", "secrets", "-n=team-a", "no"),
    ("create", "pods", f"-n={SYSTEM}", "no"),
    ("patch", "pods", f"-n={SYSTEM}", "no"),
    ("delete", "models.ai.deckhouse.io", "-n=team-a", "no"),
    ("list", "nodes", "", "no"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "", "no"),
    ("list", "modelcatalogsources.ai.deckhouse.io", "", "no"),
]


@pytest.mark.parametrize(("verb", "resource", "scope", "expected"), CONTROLLER_CAN)
def test_controller_has_exactly_what_the_chart_grants(
    chart: ControlPlane, controller: Path, verb: str, resource: str, scope: str, expected: str
) -> None:
    args = ["auth", "can-i", verb, resource] + ([scope] if scope else [])
    result = chart.kubectl_run(*args, kubeconfig=controller)
    assert result.stdout.strip() == expected, result.stderr
