"""The chart's RBAC and admission policy on the real API server: the worker's and the
controller's service accounts can do what the product needs and nothing else."""

from __future__ import annotations

import itertools
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


def patch_pod(
    plane: ControlPlane,
    cfg: Path,
    name: str,
    metadata: dict[str, Any],
    namespace: str = SYSTEM,
    spec: dict[str, Any] | None = None,
) -> Answer:
    """A bare merge PATCH as the worker sends it (kubectl would GET first, which the worker may
    not do)."""
    token = yaml.safe_load(cfg.read_text())["users"][0]["user"]["token"]
    body: dict[str, Any] = {"metadata": metadata} | ({"spec": spec} if spec is not None else {})
    request = urllib.request.Request(
        f"{plane.url}/api/v1/namespaces/{namespace}/pods/{name}",
        data=json.dumps(body).encode(),
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
    ("watch", "secrets", "-n=team-a", "no"),
    ("list", "secrets", "--all-namespaces", "no"),
    ("watch", "secrets", f"-n={SYSTEM}", "yes"),  # upload session records, by label
    ("update", "secrets", "-n=team-a", "no"),
    ("patch", "secrets", "-n=team-a", "no"),
    # Upload session Secrets; the policy below narrows both to those Secrets.
    ("create", "secrets", "-n=team-a", "yes"),
    ("delete", "secrets", "-n=team-a", "yes"),
    ("create", "pods", f"-n={SYSTEM}", "no"),
    ("patch", "pods", "-n=team-a", "yes"),  # the scheduling gate; the policy below narrows it
    ("update", "pods", "-n=team-a", "no"),
    ("delete", "models.ai.deckhouse.io", "-n=team-a", "no"),
    ("list", "nodes", "", "no"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "", "no"),
    # ModelCatalogSources: watched, status written; their Secrets read in catalog.secretsNamespace.
    ("list", "modelcatalogsources.ai.deckhouse.io", "", "yes"),
    ("watch", "modelcatalogsources.ai.deckhouse.io", "", "yes"),
    ("update", "modelcatalogsources.ai.deckhouse.io", "--subresource=status", "yes"),
    ("update", "modelcatalogsources.ai.deckhouse.io", "", "no"),
    ("delete", "modelcatalogsources.ai.deckhouse.io", "", "no"),
    ("get", "secrets", "-n=d8-system", "yes"),
    ("list", "secrets", "-n=d8-system", "no"),
    ("watch", "secrets", "-n=d8-system", "no"),
]


@pytest.mark.parametrize(("verb", "resource", "scope", "expected"), CONTROLLER_CAN)
def test_controller_has_exactly_what_the_chart_grants(
    chart: ControlPlane, controller: Path, verb: str, resource: str, scope: str, expected: str
) -> None:
    args = ["auth", "can-i", verb, resource] + ([scope] if scope else [])
    result = chart.kubectl_run(*args, kubeconfig=controller)
    assert result.stdout.strip() == expected, result.stderr


# ---- authSecretRef: a Model may name only a Secret its creator can read ----------------------

TEAM = "team-vap"
POLICY_DENIED = (
    "ValidatingAdmissionPolicy 'ai-models-auth-secret-access' with binding "
    "'ai-models-auth-secret-access' denied request: "
)


RBAC_API = "rbac.authorization.k8s.io"


def role(name: str, group: str, resource: str, verb: str, *names: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
    if names:
        rule["resourceNames"] = list(names)
    meta = {"name": name, "namespace": TEAM}
    return {"apiVersion": f"{RBAC_API}/v1", "kind": "Role", "metadata": meta, "rules": [rule]}


def binding(name: str, *users: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_API}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": TEAM},
        "roleRef": {"apiGroup": RBAC_API, "kind": "Role", "name": name},
        "subjects": [{"apiGroup": RBAC_API, "kind": "User", "name": u} for u in users],
    }


def secret(name: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": TEAM}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"token": "x"}}


@pytest.fixture(scope="module")
def team(chart: ControlPlane) -> ControlPlane:
    """``alice`` and ``bob`` may create Models in ``team-vap``; only ``bob`` may read the
    Secret ``hf-token`` there (and no one ``other-token``)."""
    chart.kubectl_run("create", "namespace", TEAM)
    objects = [
        role("model-author", "ai.deckhouse.io", "models", "create"),
        binding("model-author", "alice", "bob"),
        role("hf-token-reader", "", "secrets", "get", "hf-token"),
        binding("hf-token-reader", "bob"),
        secret("hf-token"),
        secret("other-token"),
    ]
    for obj in objects:
        applied = chart.kubectl_run("apply", "-f", "-", stdin=json.dumps(obj))
        assert applied.returncode == 0, applied.stderr
    return chart


def create_model(plane: ControlPlane, user: str, name: str, secret: str | None) -> Answer:
    source: dict[str, Any] = {"url": "https://huggingface.co/org/private"}
    if secret:
        source["authSecretRef"] = {"name": secret}
    model = {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": TEAM},
        "spec": {"source": source},
    }
    result = plane.kubectl_run("create", f"--as={user}", "-f", "-", stdin=json.dumps(model))
    return Answer(result.returncode, result.stderr)


def test_a_model_may_not_name_a_secret_its_creator_cannot_read(team: ControlPlane) -> None:
    result = create_model(team, "alice", "alice-private", "hf-token")
    assert result.returncode != 0
    assert (
        POLICY_DENIED
        + (
            "spec.source.authSecretRef: alice may not get Secret team-vap/hf-token; a Model may "
            "name only a Secret its creator can read"
        )
        in result.stderr
    ), result.stderr


def test_a_model_may_name_a_secret_its_creator_can_read(team: ControlPlane) -> None:
    result = create_model(team, "bob", "bob-private", "hf-token")
    assert result.returncode == 0, result.stderr
    got = team.kubectl_run(
        "get", "model", "bob-private", "-n", TEAM, "-o", "jsonpath={.spec.source.authSecretRef}"
    )
    assert json.loads(got.stdout) == {"name": "hf-token"}


def test_reading_one_secret_does_not_open_another(team: ControlPlane) -> None:
    result = create_model(team, "bob", "bob-other", "other-token")
    assert result.returncode != 0
    assert (
        POLICY_DENIED
        + (
            "spec.source.authSecretRef: bob may not get Secret team-vap/other-token; a Model may "
            "name only a Secret its creator can read"
        )
        in result.stderr
    ), result.stderr


def test_a_public_model_needs_no_secret_permission(team: ControlPlane) -> None:
    result = create_model(team, "alice", "alice-public", None)
    assert result.returncode == 0, result.stderr


# ---- controller.authSecretNamespaces: `get secrets` only where private Models live -----------


def test_auth_secret_namespaces_narrow_the_controllers_secret_access(
    chart: ControlPlane, controller: Path
) -> None:
    def can_get_secrets(namespace: str) -> str:
        result = chart.kubectl_run(
            "auth", "can-i", "get", "secrets", f"-n={namespace}", kubeconfig=controller
        )
        return result.stdout.strip()

    assert [can_get_secrets(n) for n in ("team-a", "team-b", "kube-system")] == ["yes"] * 3
    chart.kubectl_run("create", "namespace", "team-a")
    try:
        install(chart, SYSTEM, sets=("controller.authSecretNamespaces={team-a}",))
        namespaces = ("team-a", "team-b", "kube-system", SYSTEM, "d8-system")
        assert [can_get_secrets(n) for n in namespaces] == [
            "yes",
            "no",
            "no",
            "yes",  # its own per-Job Secrets (the system namespace's Role)
            "yes",  # ModelCatalogSource Secrets (the Role in catalog.secretsNamespace)
        ]
    finally:
        install(chart, SYSTEM)  # server-side apply of the defaults restores the cluster rule
    assert can_get_secrets("team-b") == "yes"


GATED_NS = "team-gates"
GATE = "ai.deckhouse.io/model-ready"
_GATED_PODS = itertools.count()


def gated_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"ai.deckhouse.io/model-gated": "true", "app": "web"},
            "annotations": {"ai.deckhouse.io/model-waiting": "m", "example.com/owner": "team"},
        },
        "spec": {
            "schedulingGates": [{"name": GATE}, {"name": "example.com/other"}],
            "containers": [{"name": "app", "image": "app:1"}],
        },
    }


@pytest.fixture
def gated(chart: ControlPlane) -> str:
    chart.kubectl_run("create", "namespace", GATED_NS)
    name = f"gated-{next(_GATED_PODS)}"
    created = chart.kubectl_run(
        "apply", "-n", GATED_NS, "-f", "-", stdin=json.dumps(gated_pod(name))
    )
    assert created.returncode == 0, created.stderr
    return name


def test_controller_lifts_a_gate(chart: ControlPlane, controller: Path, gated: str) -> None:
    result = patch_pod(
        chart,
        controller,
        gated,
        {
            "annotations": {"ai.deckhouse.io/model-digests": "[]"},
            "labels": {"ai.deckhouse.io/model-gated": None},
        },
        namespace=GATED_NS,
        spec={"schedulingGates": [{"name": "example.com/other"}]},
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(chart.kubectl_run("get", "pod", gated, "-n", GATED_NS, "-o", "json").stdout)
    assert got["spec"]["schedulingGates"] == [{"name": "example.com/other"}]
    assert got["metadata"]["labels"] == {"app": "web"}
    assert got["metadata"]["annotations"]["ai.deckhouse.io/model-digests"] == "[]"


@pytest.mark.parametrize(
    ("metadata", "spec", "message"),
    [
        (
            {},
            {"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
            "may not change a pod's containers, tolerations or deadline",
        ),
        ({}, {"activeDeadlineSeconds": 5}, "may not change a pod's containers"),
        ({}, {"schedulingGates": [{"name": GATE}]}, "may only remove the scheduling gate"),
        (
            {"labels": {"app": "other"}},
            None,
            "may only remove the label ai.deckhouse.io/model-gated",
        ),
        ({"labels": {"x": "y"}}, None, "may only remove the label ai.deckhouse.io/model-gated"),
        ({"annotations": {"example.com/owner": None}}, None, "may only set ai.deckhouse.io/*"),
        ({"finalizers": ["example.com/hold"]}, None, "may not change a pod's owners or finalizers"),
    ],
)
def test_controller_cannot_change_anything_else_on_pods(
    chart: ControlPlane,
    controller: Path,
    gated: str,
    metadata: dict[str, Any],
    spec: dict[str, Any] | None,
    message: str,
) -> None:
    result = patch_pod(chart, controller, gated, metadata, namespace=GATED_NS, spec=spec)
    assert result.returncode == 403, result.stderr
    assert "ValidatingAdmissionPolicy 'ai-models-controller-pod-gates'" in result.stderr
    assert f"the controller {message}" in result.stderr


# ---- upload session Secrets: create and delete everywhere, narrowed by a policy --------------

UPLOAD_NS = "team-uploads"


def upload_secret(name: str, labels: dict[str, str]) -> dict[str, Any]:
    meta = {"name": name, "namespace": UPLOAD_NS, "labels": labels}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta}


MANAGED = {"app.kubernetes.io/managed-by": "ai-models"}


def test_controller_creates_and_deletes_only_upload_secrets_outside_its_namespace(
    chart: ControlPlane, controller: Path
) -> None:
    chart.kubectl_run("create", "namespace", UPLOAD_NS)
    chart.kubectl_run("apply", "-f", "-", stdin=json.dumps(upload_secret("users-own", {})))
    denied = "ValidatingAdmissionPolicy 'ai-models-controller-upload-secrets'"

    def create(name: str, labels: dict[str, str]) -> Answer:
        body = json.dumps(upload_secret(name, labels))
        result = chart.kubectl_run("create", "-f", "-", stdin=body, kubeconfig=controller)
        return Answer(result.returncode, result.stderr)

    def delete(name: str) -> Answer:
        result = chart.kubectl_run(
            "delete", "secret", name, "-n", UPLOAD_NS, "--wait=false", kubeconfig=controller
        )
        return Answer(result.returncode, result.stderr)

    assert create("upload-u1", MANAGED) == Answer(0, "")
    assert delete("upload-u1").returncode == 0
    for name, labels in (("users-other", MANAGED), ("upload-u2", {}), ("upload-u3", {"x": "y"})):
        refused = create(name, labels)
        assert refused.returncode != 0
        assert denied in refused.stderr
    refused = delete("users-own")
    assert refused.returncode != 0
    assert denied in refused.stderr
    still = chart.kubectl_run("get", "secret", "users-own", "-n", UPLOAD_NS, "-o", "name")
    assert still.stdout.strip() == "secret/users-own"
