"""A ModelCatalogSource on the real control plane, refreshed from the real catalog server
(``ai-models-catalog-server`` over HTTPS with its own CA and a client token): Ready with the
right entryCount and revision; a new revision followed; a 304 writes nothing; the catalog down
→ not Ready with ``CatalogUnreachable`` and the last good revision kept; back → Ready; a missing
credentials Secret → ``CredentialsSecretNotFound``; the token in no status, Event or log.

The catalog server publishes ClusterModels of this API server labelled for publishing. The
published ClusterModel here is an upload source (so the controller creates no Job for it) whose
status the test sets to Ready with a digest, as a preparation would have.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.catalog_protocol import ANNOTATION_CATALOG_VERSION, LABEL_CATALOG_PUBLISH
from controller.kube import KubeClient, load_api_client
from tests.e2e.conftest import ControllerProcess, RestartableRegistry, get_json, wait_for
from tests.e2e.helpers import apply, ready_condition
from tests.ground.catalog import ROOT, CatalogServerProcess, run_catalog_server
from tests.ground.controlplane import ControlPlane
from tests.ground.procs import Process

pytestmark = pytest.mark.e2e

SECRETS_NS = "d8-system"
SOURCE = "e2e-central"
PUBLISHED = "e2e-catalog-llama"
DIGEST = "sha256:" + hashlib.sha256(b"e2e catalog artifact").hexdigest()
REFRESH = "30s"
# This test's own publish label: other e2e tests publish ClusterModels of this API server too.
LABEL_VALUE = "e2e-source"
# One refresh interval, its jitter and the reconcile's own time.
WAIT = 60.0


def secret(name: str, data: dict[str, bytes]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": SECRETS_NS},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def catalog_source(name: str, url: str, credentials: str) -> dict[str, object]:
    return {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "ModelCatalogSource",
        "metadata": {"name": name},
        "spec": {
            "url": url,
            "credentialsSecretName": credentials,
            "caSecretName": f"{SOURCE}-ca",
            "refreshInterval": REFRESH,
        },
    }


def publish(plane: ControlPlane) -> None:
    """A ClusterModel labelled for the catalog, its status Ready with an artifact digest."""
    obj = {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "ClusterModel",
        "metadata": {"name": PUBLISHED, "labels": {LABEL_CATALOG_PUBLISH: LABEL_VALUE}},
        "spec": {"source": {"upload": {}}},
    }
    apply(plane, obj)
    status = {
        "phase": "Ready",
        "observedGeneration": 1,
        "artifact": {"kind": "OCI", "digest": DIGEST, "sizeBytes": 1024},
        "resolved": {"architecture": "llama", "format": "Safetensors"},
        "conditions": [],
    }

    def replaced() -> bool:  # the controller may write in between (a 409): read and try again
        current = {**get_json(plane, "clustermodel", PUBLISHED), "status": status}
        result = plane.kubectl_run(
            "replace", "--subresource=status", "-f", "-", stdin=json.dumps(current)
        )
        return result.returncode == 0

    wait_for(replaced, timeout=30)


def restart(server: CatalogServerProcess, work: Path) -> Process:
    """The same server again (same port, certificate, token): its recorded command line."""
    argv = [str(a) for a in server.process.popen.args]  # type: ignore[union-attr]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # as run_catalog_server starts it
    again = Process("catalog-server-again", argv, work, env=env)
    again.wait_ready(lambda: server.get("/healthz").status_code == 200, timeout=30)
    return again


@pytest.fixture
def catalog(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    e2e_registry: RestartableRegistry,
    tmp_path: Path,
) -> Iterator[CatalogServerProcess]:
    kube = KubeClient(load_api_client(str(control_plane.kubeconfig)))
    with run_catalog_server(
        tmp_path / "catalog",
        kube,
        control_plane.kubeconfig,
        e2e_registry.host,
        selector=f"{LABEL_CATALOG_PUBLISH}={LABEL_VALUE}",
    ) as server:
        publish(control_plane)
        yield server
    for args in (
        ("modelcatalogsource", SOURCE),
        ("modelcatalogsource", f"{SOURCE}-nocreds"),
        ("clustermodel", PUBLISHED),
        ("secret", f"{SOURCE}-token", "-n", SECRETS_NS),
        ("secret", f"{SOURCE}-ca", "-n", SECRETS_NS),
    ):
        control_plane.kubectl_run("delete", *args, "--ignore-not-found", "--wait=false")


def source_status(plane: ControlPlane, name: str = SOURCE) -> dict[str, object]:
    return dict(get_json(plane, "modelcatalogsource", name).get("status") or {})


def ready_with(plane: ControlPlane, revision: object) -> dict[str, object] | None:
    status = source_status(plane)
    cond = ready_condition({"status": status})
    ok = cond.get("status") == "True" and status.get("catalogRevision") == revision
    return status if ok else None


def test_a_source_follows_its_catalog_through_changes_and_an_outage(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    catalog: CatalogServerProcess,
    tmp_path: Path,
) -> None:
    plane = control_plane
    apply(plane, secret(f"{SOURCE}-token", {"token": catalog.token.encode()}))
    apply(plane, secret(f"{SOURCE}-ca", {"ca.crt": catalog.ca_cert.read_bytes()}))
    expected = catalog.get("/v1/catalog", catalog.token).json()
    assert [(e["name"], e["digest"]) for e in expected["entries"]] == [(PUBLISHED, DIGEST)]
    apply(plane, catalog_source(SOURCE, catalog.url, f"{SOURCE}-token"))

    # Ready with the catalog's revision and its one entry.
    status = wait_for(lambda: ready_with(plane, expected["revision"]), timeout=WAIT)
    assert status["entryCount"] == 1
    assert ready_condition({"status": status})["reason"] == "CatalogRefreshed"
    assert status["observedGeneration"] == 1

    # A refresh that answers 304 writes nothing.
    version = get_json(plane, "modelcatalogsource", SOURCE)["metadata"]["resourceVersion"]
    marker = f"source={SOURCE}"
    wait_for(
        lambda: any(
            marker in line and "unchanged=True" in line for line in controller.output().splitlines()
        ),
        timeout=WAIT,
    )
    after = get_json(plane, "modelcatalogsource", SOURCE)
    assert after["metadata"]["resourceVersion"] == version
    assert after["status"] == status

    # A new revision (the entry's version moves) → the status follows.
    annotated = plane.kubectl_run(
        "annotate", "clustermodel", PUBLISHED, f"{ANNOTATION_CATALOG_VERSION}=2"
    )
    assert annotated.returncode == 0, annotated.stderr
    moved = catalog.get("/v1/catalog", catalog.token).json()["revision"]
    assert moved != expected["revision"]
    status = wait_for(lambda: ready_with(plane, moved), timeout=WAIT)
    assert status["entryCount"] == 1

    # The catalog down → not Ready, CatalogUnreachable, the last good revision kept.
    catalog.process.stop()
    down = wait_for(
        lambda: (
            (s := source_status(plane))
            and ready_condition({"status": s}).get("reason") == "CatalogUnreachable"
            and s
        ),
        timeout=WAIT,
    )
    assert ready_condition({"status": down})["status"] == "False"
    assert (down["catalogRevision"], down["entryCount"]) == (moved, 1)
    assert down["lastSuccessfulRefreshTime"] == status["lastSuccessfulRefreshTime"]

    # Back → Ready again.
    again = restart(catalog, tmp_path)
    try:
        wait_for(lambda: ready_with(plane, moved), timeout=WAIT)
    finally:
        again.stop()

    # A missing credentials Secret is named.
    apply(plane, catalog_source(f"{SOURCE}-nocreds", catalog.url, "no-such-secret"))
    cond = wait_for(
        lambda: ready_condition({"status": source_status(plane, f"{SOURCE}-nocreds")}),
        timeout=WAIT,
    )
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False",
        "CredentialsSecretNotFound",
        f"Secret {SECRETS_NS}/no-such-secret (credentialsSecretName) not found",
    )

    # The token is in no status, Event or controller log line.
    events = plane.kubectl_run("get", "events", "-A", "-o", "json").stdout
    sources = plane.kubectl_run("get", "modelcatalogsources", "-o", "json").stdout
    mine = [e for e in json.loads(events)["items"] if e["involvedObject"]["name"] == SOURCE]
    assert [e["reason"] for e in sorted(mine, key=lambda e: e["firstTimestamp"])] == [
        "CatalogRefreshed",
        "CatalogRevisionChanged",
        "CatalogUnreachable",
        "CatalogRefreshed",
    ]
    for text in (events, sources, controller.output()):
        assert catalog.token not in text
