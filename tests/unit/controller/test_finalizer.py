"""Finalization through ``reconcile`` against the in-memory API server of ``fakekube`` and a
fake registry that records its calls on the same timeline.

The order is fixed: the Jobs, (no worker pod still running), the per-object Secrets, the
artifact's manifest in the registry, and only then the finalizer; something already gone at
any step is fine; a registry that fails keeps the finalizer and is retried; the decision logs
one line with the key."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from controller import naming
from controller.errors import Forbidden, NotFound, RegistryError
from controller.finalizer import POD_WAIT_SECONDS
from controller.kube import CLUSTER_MODELS, JOBS, MODELS, SECRETS
from controller.naming import ObjectKey
from tests.unit.controller.fakekube import FakeKube
from tests.unit.controller.rig import JOB, KEY, SYSTEM, UID, Rig, model

DIGEST = "sha256:" + "e" * 64
OTHER = "sha256:" + "f" * 64
SECRET = f"{JOB}-source-token"


class FakeRegistry:
    """Manifests by digest, one tag (the object's UID); calls join the fake API's timeline."""

    def __init__(self, kube: FakeKube, manifests: set[str], tagged: str | None = None) -> None:
        self._kube = kube
        self.manifests = manifests
        self.tagged = tagged
        self.down: RegistryError | None = None
        self.calls: list[tuple[int, str]] = []
        """(number of API calls before it, the call)."""

    def _arrive(self, call: str) -> None:
        self.calls.append((len(self._kube.calls), call))
        if self.down is not None:
            raise self.down

    def resolve(self, repository: str, tag: str) -> str | None:
        self._arrive(f"resolve {repository}:{tag}")
        return self.tagged if self.tagged in self.manifests else None

    def delete(self, repository: str, digest: str) -> bool:
        self._arrive(f"delete {repository}@{digest}")
        if digest in self.manifests:
            self.manifests.remove(digest)
            return True
        return False


def timeline(rig: Rig, registry: FakeRegistry) -> list[str]:
    calls = [str(c) for c in rig.kube.calls]
    for before, call in reversed(registry.calls):
        calls.insert(before, f"registry {call}")
    return [c for c in calls if not c.startswith("create events")]


def deleted(
    *, manifests: set[str], tagged: str | None = None, pod: str = "Succeeded"
) -> tuple[Rig, FakeRegistry]:
    """A Ready Model with its Job, worker pod and token Secret, just deleted by the user."""
    rig = Rig()
    registry = FakeRegistry(rig.kube, manifests, tagged)
    rig.finalizer._registry = registry
    rig.add(model())
    rig.secret()
    assert rig.reconcile() is None
    rig.pod(1, pod)
    rig.kube.set_status(
        MODELS, "private-model", "team-a", {"phase": "Ready", "artifact": {"digest": DIGEST}}
    )
    assert rig.kube.delete(MODELS, "private-model", "team-a")
    rig.kube.calls.clear()
    return rig, registry


def repository(rig: Rig, key: ObjectKey = KEY) -> str:
    return naming.repository(rig.config.registry.prefix, key, UID)


def test_jobs_then_secrets_then_the_manifest_then_the_finalizer() -> None:
    rig, registry = deleted(manifests={DIGEST, OTHER}, tagged=OTHER)
    repo = repository(rig)
    with capture_logs() as logs:
        assert rig.reconcile() is None
    assert timeline(rig, registry) == [
        f"delete jobs {SYSTEM}/{JOB}",
        "replace models/status team-a/private-model",
        f"list secrets {SYSTEM}",
        f"delete secrets {SYSTEM}/{SECRET}",
        f"registry resolve {repo}:{UID}",
        f"registry delete {repo}@{DIGEST}",
        f"registry delete {repo}@{OTHER}",
        "patch models team-a/private-model",
    ]
    deleting = rig.kube.calls_of("replace", MODELS)[0].body
    assert deleting is not None
    assert deleting["status"]["phase"] == "Deleting"
    assert deleting["status"]["conditions"][0]["message"] == (
        "cleaning up: Secrets and the artifact"
    )
    assert registry.manifests == set()
    assert rig.kube.stored(MODELS, "private-model", "team-a") is None
    assert rig.kube.objects(SECRETS, SYSTEM) == []
    assert rig.events()[-1] == (
        "Normal",
        "Deleted",
        f"preparation Job and Secrets removed; artifact {DIGEST}, {OTHER} removed",
    )
    assert [(e["event"], e["key"], e["artifacts"]) for e in logs] == [
        ("finalized", "Model/team-a/private-model", [DIGEST, OTHER])
    ]


def test_a_running_worker_pod_is_waited_for_before_anything_else() -> None:
    rig, registry = deleted(manifests={DIGEST}, tagged=DIGEST, pod="Running")
    assert rig.reconcile() == POD_WAIT_SECONDS
    assert timeline(rig, registry) == [
        f"delete jobs {SYSTEM}/{JOB}",
        "replace models/status team-a/private-model",
    ]
    assert rig.ready()["message"] == f"waiting for the worker pod {JOB}-1 to stop"
    rig.kube.calls.clear()
    assert rig.reconcile() == POD_WAIT_SECONDS  # the Job is gone; the message is the same
    assert rig.kube.calls == []
    rig.pod(1, "Failed")
    assert rig.reconcile() is None
    assert timeline(rig, registry) == [
        f"list secrets {SYSTEM}",
        f"delete secrets {SYSTEM}/{SECRET}",
        f"registry resolve {repository(rig)}:{UID}",
        f"registry delete {repository(rig)}@{DIGEST}",
        "patch models team-a/private-model",
    ]
    assert rig.kube.stored(MODELS, "private-model", "team-a") is None


def test_whatever_is_gone_already_is_fine() -> None:
    """The Job vanishes between the cache read and its delete, no Secret is left, the registry
    has no manifest: the object is released all the same."""
    rig, registry = deleted(manifests=set())
    rig.kube.drop(SECRETS, SECRET, SYSTEM)
    vanish = lambda call: rig.kube.drop(JOBS, JOB, SYSTEM)  # noqa: E731
    rig.kube.before("delete", JOBS, vanish, once=True)
    assert rig.reconcile() is None
    assert timeline(rig, registry) == [
        f"delete jobs {SYSTEM}/{JOB}",
        "replace models/status team-a/private-model",
        f"list secrets {SYSTEM}",
        f"registry resolve {repository(rig)}:{UID}",
        f"registry delete {repository(rig)}@{DIGEST}",
        "patch models team-a/private-model",
    ]
    assert rig.kube.stored(MODELS, "private-model", "team-a") is None
    assert rig.events()[-1] == (
        "Normal",
        "Deleted",
        "preparation Job and Secrets removed; no artifact to remove",
    )


def test_an_object_gone_before_its_release_is_not_found() -> None:
    rig, _ = deleted(manifests={DIGEST})
    gone = lambda call: rig.kube.drop(MODELS, "private-model", "team-a")  # noqa: E731
    rig.kube.before("patch", MODELS, gone, once=True)
    with pytest.raises(NotFound):
        rig.reconcile()  # the runner: done
    assert [e for e in rig.events() if e[1] == "Deleted"] == []
    assert rig.reconcile() is None


def test_a_registry_that_fails_keeps_the_finalizer_and_is_retried() -> None:
    rig, registry = deleted(manifests={DIGEST}, tagged=DIGEST)
    registry.down = RegistryError("registry.example answered 503 to HEAD")
    with pytest.raises(RegistryError):
        rig.reconcile()
    assert rig.obj()["metadata"]["finalizers"] == [naming.FINALIZER]
    assert rig.ready()["message"] == (
        "waiting for the registry to delete the artifact: registry.example answered 503 to HEAD"
    )
    assert rig.kube.objects(SECRETS, SYSTEM) == []
    # Still down, and the status cannot be written either: the registry's error is raised.
    rig.kube.forbid("replace", MODELS)
    with pytest.raises(RegistryError):
        rig.reconcile()
    # The registry is back; the status says Deleting already, so the refused write is not tried.
    registry.down = None
    rig.kube.calls.clear()
    registry.calls.clear()
    assert rig.reconcile() is None
    assert timeline(rig, registry) == [
        f"list secrets {SYSTEM}",
        f"registry resolve {repository(rig)}:{UID}",
        f"registry delete {repository(rig)}@{DIGEST}",
        "patch models team-a/private-model",
    ]
    assert rig.kube.stored(MODELS, "private-model", "team-a") is None


def test_a_forbidden_delete_is_raised_and_keeps_the_finalizer() -> None:
    rig, registry = deleted(manifests={DIGEST})
    rig.kube.forbid("delete", SECRETS)
    with pytest.raises(Forbidden):
        rig.reconcile()
    assert rig.obj()["metadata"]["finalizers"] == [naming.FINALIZER]
    assert registry.calls == []


def test_an_object_without_our_finalizer_is_left_alone() -> None:
    rig = Rig()
    obj = model(finalizer=False)
    obj["metadata"]["finalizers"] = ["example.com/other"]
    rig.add(obj)
    rig.kube.delete(MODELS, "private-model", "team-a")
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []


def test_a_cluster_model_without_a_registry_is_released() -> None:
    rig = Rig()
    obj = model(auth_secret=None)
    obj["kind"] = "ClusterModel"
    obj["metadata"]["name"] = "shared"
    del obj["metadata"]["namespace"]
    key = rig.add(obj)
    assert key == ObjectKey("ClusterModel", "", "shared")
    assert rig.reconcile(key) is None
    job = rig.kube.stored(JOBS, JOB, SYSTEM)
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["name"] == "shared"
    rig.kube.delete(CLUSTER_MODELS, "shared")
    rig.kube.calls.clear()
    with capture_logs() as logs:
        assert rig.reconcile(key) is None
    assert rig.calls() == [
        f"delete jobs {SYSTEM}/{JOB}",
        "replace clustermodels/status shared",
        f"list secrets {SYSTEM}",
        "patch clustermodels shared",
    ]
    assert rig.kube.stored(CLUSTER_MODELS, "shared") is None
    assert [(e["event"], e["key"]) for e in logs] == [("finalized", "ClusterModel/shared")]
    assert rig.events()[-1] == (
        "Normal",
        "Deleted",
        "preparation Job and Secrets removed; no artifact to remove",
    )
