"""The chart's ClusterRoles aggregated into the built-in view, edit and admin, on the real API
server: the kube-controller-manager's clusterrole-aggregation controller folds them into the
bootstrap roles, and users (impersonated, as `kubectl --as` does) bound to those roles get
exactly what the chart promises."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.ground.controlplane import ControlPlane
from tests.integration.chart import CHART, helm, install, render, template

SYSTEM = "d8-ai-models"
TEAM, OTHER = "roles-team", "roles-other"
GROUP_VERSION = "ai.deckhouse.io/v1alpha1"
MODELS = f"/apis/{GROUP_VERSION}/namespaces/{TEAM}/models"
CLUSTER_MODEL_ROLE = "ai-models-user-clustermodels"


def model(name: str, namespace: str = TEAM, kind: str = "Model") -> dict[str, Any]:
    metadata = {"name": name} | ({"namespace": namespace} if kind == "Model" else {})
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": metadata,
        "spec": {"source": {"url": "https://huggingface.co/org/tiny"}},
    }


def forbidden(
    user: str, verb: str, resource: str, namespace: str | None = None, name: str = ""
) -> str:
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    named = f' "{name}"' if name else ""
    return (
        f'{resource}.ai.deckhouse.io{named} is forbidden: User "{user}" cannot {verb} resource '
        f'"{resource}" in API group "ai.deckhouse.io"{where}'
    )


def binding(name: str, role: str, user: str, namespace: str | None) -> dict[str, Any]:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    metadata = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }


def apply(plane: ControlPlane, obj: dict[str, Any], *user: str) -> Any:
    return plane.kubectl_run("apply", *user, "-f", "-", stdin=json.dumps(obj))


def create(plane: ControlPlane, obj: dict[str, Any], user: str) -> Any:
    """A bare create (apply would GET first and be refused for `get` instead)."""
    return plane.kubectl_run("create", f"--as={user}", "-f", "-", stdin=json.dumps(obj))


def wait_can_i(plane: ControlPlane, *args: str, expected: str = "yes") -> None:
    """The aggregation controller folds a labelled ClusterRole in asynchronously."""
    deadline = time.monotonic() + 60
    while True:
        answer = plane.kubectl_run("auth", "can-i", *args).stdout.strip()
        if answer == expected:
            return
        assert time.monotonic() < deadline, f"can-i {args}: {answer}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def users(control_plane: ControlPlane) -> ControlPlane:
    """alice: edit in TEAM; vera: view in TEAM; olga: admin in TEAM; ed: edit cluster-wide."""
    install(control_plane, SYSTEM)
    for namespace in (TEAM, OTHER):
        control_plane.kubectl_run("create", "namespace", namespace)
    for obj in (
        binding("alice-edit", "edit", "alice", TEAM),
        binding("vera-view", "view", "vera", TEAM),
        binding("olga-admin", "admin", "olga", TEAM),
        binding("ai-models-test-ed-edit", "edit", "ed", None),
    ):
        applied = apply(control_plane, obj)
        assert applied.returncode == 0, applied.stderr
    wait_can_i(control_plane, "create", "models.ai.deckhouse.io", "-n", TEAM, "--as=alice")
    wait_can_i(control_plane, "list", "clustermodels.ai.deckhouse.io", "--as=ed")
    return control_plane


def test_edit_user_creates_watches_describes_and_deletes_a_model(users: ControlPlane) -> None:
    alice = "--as=alice"
    created = create(users, model("alice-model"), "alice")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "model.ai.deckhouse.io/alice-model created"
    got = users.kubectl_run("get", "model", "alice-model", "-n", TEAM, alice, "-o", "name")
    assert got.stdout.strip() == "model.ai.deckhouse.io/alice-model", got.stderr
    listed = users.kubectl_run("get", "models", "-n", TEAM, alice, "-o", "name")
    assert listed.stdout.split() == ["model.ai.deckhouse.io/alice-model"], listed.stderr
    watched = users.kubectl_run("get", "--raw", f"{MODELS}?watch=true&timeoutSeconds=1", alice)
    assert watched.returncode == 0, watched.stderr
    event = json.loads(watched.stdout.splitlines()[0])
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "alice-model")
    described = users.kubectl_run("describe", "model", "alice-model", "-n", TEAM, alice)
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines()[0].split() == ["Name:", "alice-model"]
    labelled = users.kubectl_run("label", "model", "alice-model", "-n", TEAM, "team=a", alice)
    assert labelled.returncode == 0, labelled.stderr
    deleted = users.kubectl_run("delete", "model", "alice-model", "-n", TEAM, alice)
    assert deleted.stdout.strip() == (
        'model.ai.deckhouse.io "alice-model" deleted from roles-team namespace'
    ), deleted.stderr


def test_edit_user_cannot_touch_another_namespace(users: ControlPlane) -> None:
    placed = apply(users, model("theirs", OTHER))
    assert placed.returncode == 0, placed.stderr
    created = create(users, model("intruder", OTHER), "alice")
    assert forbidden("alice", "create", "models", OTHER) in created.stderr, created.stderr
    for verb, name, args in (
        ("get", "theirs", ("get", "model", "theirs")),
        ("list", "", ("get", "models")),
        ("watch", "", ("get", "--raw", f"/apis/{GROUP_VERSION}/namespaces/{OTHER}/models?watch=1")),
        ("delete", "theirs", ("delete", "model", "theirs")),
    ):
        namespace = () if args[1] == "--raw" else ("-n", OTHER)
        result = users.kubectl_run(*args, *namespace, "--as=alice")
        assert result.returncode != 0
        assert forbidden("alice", verb, "models", OTHER, name) in result.stderr, result.stderr
    for verb in ("patch", "update"):  # kubectl patch would GET first and be refused for that
        answer = users.kubectl_run(
            "auth", "can-i", verb, "models.ai.deckhouse.io/theirs", "-n", OTHER, "--as=alice"
        )
        assert answer.stdout.strip() == "no"
    kept = users.kubectl_run("get", "model", "theirs", "-n", OTHER, "-o", "name")
    assert kept.stdout.strip() == "model.ai.deckhouse.io/theirs"


def test_view_user_reads_status_but_cannot_create(users: ControlPlane) -> None:
    assert apply(users, model("shared")).returncode == 0
    status = {"phase": "Failed", "conditions": [_ready("False", "SourceNotFound")]}
    patched = users.kubectl_run(
        "patch", "model", "shared", "-n", TEAM, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    vera = "--as=vera"
    phase = users.kubectl_run(
        "get", "model", "shared", "-n", TEAM, vera, "-o", "jsonpath={.status.phase}"
    )
    assert phase.stdout == "Failed", phase.stderr
    subresource = users.kubectl_run("get", "--raw", f"{MODELS}/shared/status", vera)
    assert json.loads(subresource.stdout)["status"]["conditions"][0]["reason"] == "SourceNotFound"
    table = users.kubectl_run("get", "models", "-n", TEAM, vera).stdout.splitlines()
    assert table[0].split()[-2:] == ["REASON", "AGE"]
    assert table[1].split()[:3] == ["shared", "Failed", "SourceNotFound"]
    created = create(users, model("vera-model"), "vera")
    assert forbidden("vera", "create", "models", TEAM) in created.stderr, created.stderr
    for verb in ("delete", "patch", "update"):
        answer = users.kubectl_run(
            "auth", "can-i", verb, "models.ai.deckhouse.io", "-n", TEAM, vera
        )
        assert answer.stdout.strip() == "no"
    status_write = users.kubectl_run(
        "auth", "can-i", "patch", "models.ai.deckhouse.io", "--subresource=status", "-n", TEAM,
        "--as=alice",
    )  # fmt: skip
    assert status_write.stdout.strip() == "no"


def test_admin_user_manages_models(users: ControlPlane) -> None:
    created = create(users, model("olga-model"), "olga")
    assert created.returncode == 0, created.stderr
    deleted = users.kubectl_run("delete", "model", "olga-model", "-n", TEAM, "--as=olga")
    assert deleted.returncode == 0, deleted.stderr


def test_nobody_with_just_edit_creates_a_cluster_model(users: ControlPlane) -> None:
    for user in ("alice", "ed", "olga"):
        created = create(users, model(f"{user}-cluster", kind="ClusterModel"), user)
        assert created.returncode != 0
        assert forbidden(user, "create", "clustermodels") in created.stderr, created.stderr
    # A cluster-wide edit binding reads ClusterModels (view is part of edit) but writes none.
    listed = users.kubectl_run("get", "clustermodels", "--as=ed", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    answer = users.kubectl_run(
        "auth", "can-i", "create", "clustermodels.ai.deckhouse.io", "--as=ed"
    )
    assert answer.stdout.strip() == "no"
    catalogs = users.kubectl_run("get", "modelcatalogsources", "--as=ed")
    assert forbidden("ed", "list", "modelcatalogsources") in catalogs.stderr, catalogs.stderr


@pytest.fixture
def cluster_models_to_edit(users: ControlPlane) -> Iterator[ControlPlane]:
    """rbac.aggregateClusterModelsTo=[edit] applied; its ClusterRole removed afterwards."""
    rendered = template(SYSTEM, (), ("rbac.aggregateClusterModelsTo={edit}",))
    role = next(
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == CLUSTER_MODEL_ROLE
    )
    assert apply(users, role).returncode == 0
    yield users
    users.kubectl_run("delete", "clusterrole", CLUSTER_MODEL_ROLE)
    wait_can_i(users, "create", "clustermodels.ai.deckhouse.io", "--as=ed", expected="no")


def test_a_value_opens_cluster_models_to_edit(cluster_models_to_edit: ControlPlane) -> None:
    plane = cluster_models_to_edit
    wait_can_i(plane, "create", "clustermodels.ai.deckhouse.io", "--as=ed")
    created = create(plane, model("ed-cluster", kind="ClusterModel"), "ed")
    assert created.stdout.strip() == "clustermodel.ai.deckhouse.io/ed-cluster created", (
        created.stderr
    )
    deleted = plane.kubectl_run("delete", "clustermodel", "ed-cluster", "--as=ed")
    assert deleted.returncode == 0, deleted.stderr
    # A RoleBinding to edit never reaches a cluster-scoped resource.
    alice = create(plane, model("alice-cluster", kind="ClusterModel"), "alice")
    assert forbidden("alice", "create", "clustermodels") in alice.stderr, alice.stderr


def _ready(status: str, reason: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": "the source was not found",
        "lastTransitionTime": "2026-11-30T00:00:00Z",
    }


def test_the_aggregation_can_be_switched_off_and_takes_only_edit_or_admin() -> None:
    def user_roles(*sets: str) -> list[str]:
        docs = render("d8-ai-models", sets=sets)
        return sorted(
            d["metadata"]["name"]
            for d in docs
            if d["kind"] == "ClusterRole" and d["metadata"]["name"].startswith("ai-models-user-")
        )

    assert user_roles() == ["ai-models-user-edit", "ai-models-user-view"]
    assert user_roles("rbac.aggregateToUserRoles=false") == []
    assert user_roles("rbac.aggregateModelCatalogSourcesTo={admin}") == [
        "ai-models-user-edit",
        "ai-models-user-modelcatalogsources",
        "ai-models-user-view",
    ]
    refused = helm("template", "x", str(CHART), "--set", "rbac.aggregateClusterModelsTo={view}")
    assert refused.returncode != 0
    assert (
        'rbac.aggregateClusterModelsTo.0 must be one of the following: "edit", "admin"'
        in refused.stderr
    ), refused.stderr
