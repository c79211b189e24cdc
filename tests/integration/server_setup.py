"""Setup shared by the integration tests of the servers (catalog server, delivery endpoint,
upload gateway): a ServiceAccount holding exactly a component's RBAC rules, with a kubeconfig of
its token (what the server runs with), and artifacts pushed into the test registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from controller.kube import KubeClient, Resource
from tests.ground.controlplane import ControlPlane
from tests.ground.registry import Registry
from tests.unit.worker.oci.artifacts import MANIFEST, sha256

RBAC = "rbac.authorization.k8s.io"
ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", True)
ROLES = Resource(RBAC, "v1", "roles", "Role", True)
BINDINGS = Resource(RBAC, "v1", "rolebindings", "RoleBinding", True)
CLUSTER_ROLES = Resource(RBAC, "v1", "clusterroles", "ClusterRole", False)
CLUSTER_BINDINGS = Resource(RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", False)
Rules = list[dict[str, Any]]


def account_kubeconfig(
    kube: KubeClient,
    plane: ControlPlane,
    path: Path,
    account: tuple[str, str],
    *,
    rules: Rules | None = None,
    cluster_rules: Rules | None = None,
) -> Path:
    """A kubeconfig of a new ServiceAccount ``(namespace, name)`` bound to ``rules`` (a Role of
    its namespace) and ``cluster_rules`` (a ClusterRole ``<namespace>-<name>``), nothing else."""
    namespace, name = account
    kube.create(ACCOUNTS, {"metadata": {"name": name}}, namespace)
    subjects = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    if rules:
        kube.create(ROLES, {"metadata": {"name": name}, "rules": rules}, namespace)
        kube.create(BINDINGS, {"metadata": {"name": name}, "subjects": subjects,
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name}}, namespace)  # fmt: skip
    if cluster_rules:
        role = f"{namespace}-{name}"
        kube.create(CLUSTER_ROLES, {"metadata": {"name": role}, "rules": cluster_rules})
        kube.create(CLUSTER_BINDINGS, {"metadata": {"name": role}, "subjects": subjects,
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role}})  # fmt: skip
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 7200}}  # fmt: skip
    token = kube.request("POST", ACCOUNTS.path(namespace, name, "token"), body=request)
    return plane.write_kubeconfig(path, {"token": token["status"]["token"]})


def push_artifact(
    registry: Registry, repo: str, document: dict[str, Any], blobs: list[bytes]
) -> str:
    """The blobs, then ``document`` as an OCI manifest by digest; the manifest's digest."""
    base = f"{registry.url}/v2/{repo}"
    for blob in blobs:
        started = requests.post(f"{base}/blobs/uploads/", timeout=10)
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        location = f"{registry.url}{location}" if location.startswith("/") else location
        joiner = "&" if "?" in location else "?"
        done = requests.put(f"{location}{joiner}digest={sha256(blob)}", data=blob, timeout=30)
        assert done.status_code == 201, done.text
    manifest = json.dumps(document).encode()
    put = requests.put(
        f"{base}/manifests/{sha256(manifest)}", data=manifest,
        headers={"Content-Type": MANIFEST}, timeout=10,
    )  # fmt: skip
    assert put.status_code == 201, put.text
    return sha256(manifest)
