"""``reconcile`` over one preparation against the in-memory API server of ``test_dispatch``:
the Job's and pods' states are set by the test as the Job controller and the worker would set
them, and every write to the Model is recorded. The status moves only forward within an attempt,
counts attempts one way, names the Job, and is written only when it changes."""

from __future__ import annotations

import copy
import json
from typing import Any

from controller import naming
from controller.config import Config
from controller.dispatch import Dispatcher
from controller.events import EventRecorder
from controller.finalizer import Finalizer
from controller.kube import EVENTS, JOBS, MODELS, Resource
from controller.naming import ObjectKey
from controller.reconciler import Caches, Reconciler
from tests.unit.controller.test_dispatch import NOW, SYSTEM, UID, FakeKube, View, model

JSON = dict[str, Any]
JOB = f"prepare-{UID}"
WHERE = f"Job {SYSTEM}/{JOB}"
KEY = ObjectKey("Model", "team-a", "private-model")
RESULT = {
    "artifact": {
        "kind": "OCI",
        "digest": "sha256:" + "d" * 64,
        "mediaType": "application/vnd.cncf.model.manifest.v1+json",
        "sizeBytes": 3 << 20,
    },
    "resolved": {"architecture": "BertModel", "format": "Safetensors", "parameterCount": 7},
    "source": {"resolvedType": "HuggingFace"},
}


class RecordingKube(FakeKube):
    """Records every write to a Model: (verb, subresource, Ready message or the patch)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str, object]] = []

    def merge_patch(
        self, res: Resource, name: str, patch: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        if res.plural == "models":
            self.writes.append(("patch", sub, patch))
        return super().merge_patch(res, name, patch, namespace, sub)

    def replace(
        self, res: Resource, name: str, body: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        if res.plural == "models":
            ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
            self.writes.append(("replace", sub, ready["message"]))
        return super().replace(res, name, body, namespace, sub)


class Ground:
    def __init__(self) -> None:
        self.kube = RecordingKube()
        self.kube.create(MODELS, model("https://huggingface.co/org/repo", None), "team-a")
        self.pods: list[JSON] = []
        self.hide_jobs = False
        fake: Any = self.kube
        jobs = View(self.kube, JOBS)
        models = View(self.kube, MODELS)
        caches = Caches(models, models, jobs, jobs)  # type: ignore[arg-type]
        caches.pods_of = lambda job: copy.deepcopy(self.pods)  # type: ignore[method-assign]
        caches.job = self._job  # type: ignore[method-assign]
        config = Config(systemNamespace=SYSTEM)
        events = EventRecorder(fake)
        finalizer = Finalizer(fake, caches, config, None, events, lambda: NOW)
        self.reconciler = Reconciler(
            fake, caches, config, Dispatcher(fake, caches, config), finalizer, events, lambda: NOW
        )

    def _job(self, namespace: str, name: str) -> JSON | None:
        return None if self.hide_jobs else self.kube.get(JOBS, name, namespace)

    def reconcile(self) -> float | None:
        return self.reconciler.reconcile(KEY)

    def job_status(self, **fields: Any) -> None:
        self.kube.objects[("jobs", SYSTEM, JOB)]["status"] = fields

    def pod(self, i: int, phase: str, *, exit_code: int | None = None, **extra: Any) -> None:
        pod: JSON = {
            "metadata": {
                "name": f"{JOB}-{i}",
                "creationTimestamp": f"2026-01-02T03:0{i}:00Z",
                "annotations": extra.pop("annotations", {}),
            },
            "status": {"phase": phase},
        }
        if exit_code is not None:
            terminated = {"exitCode": exit_code, "reason": "Error", "message": extra["message"]}
            pod["status"]["containerStatuses"] = [
                {"name": "worker", "state": {"terminated": terminated}}
            ]
        self.pods = [p for p in self.pods if p["metadata"]["name"] != f"{JOB}-{i}"] + [pod]

    def status_messages(self) -> list[object]:
        return [m for verb, sub, m in self.kube.writes if sub == "status"]

    def events(self) -> list[tuple[str, str]]:
        return [(e["reason"], e["message"]) for e in self.kube.of(EVENTS)]

    def obj(self) -> JSON:
        return self.kube.objects[("models", "team-a", "private-model")]


def progress(percent: int, done: int, stage: str = "transfer") -> dict[str, str]:
    detail = {"stage": stage, "bytesDone": done, "bytesTotal": 3 << 20, "file": "model.safetensors"}
    if stage != "transfer":
        del detail["file"]
    return {
        "ai.deckhouse.io/progress": str(percent),
        "ai.deckhouse.io/progress-detail": json.dumps(detail),
    }


def failure(reason: str, message: str, *log: str) -> str:
    return json.dumps({"reason": reason, "message": message, "log": list(log)})


def test_one_preparation_moves_only_forward_with_one_write_per_change() -> None:
    g = Ground()
    assert g.reconcile() is None
    # The informer has not shown the Job yet: no second start, no second Event.
    g.hide_jobs = True
    assert g.reconcile() is None
    g.hide_jobs = False
    assert g.reconcile() is None  # nothing changed: nothing written
    g.pod(1, "Pending")
    assert g.reconcile() is None
    g.pod(1, "Running", annotations=progress(33, 1 << 20))
    g.reconcile()
    g.reconcile()
    g.pod(1, "Running", annotations=progress(99, 3 << 20, "manifest"))
    g.reconcile()
    # The pod succeeded; the Job's Complete condition comes a moment later.
    result = {**progress(100, 3 << 20, "manifest"), naming.ANNOTATION_RESULT: json.dumps(RESULT)}
    g.pod(1, "Succeeded", exit_code=0, message="", annotations=result)
    g.reconcile()
    g.job_status(conditions=[{"type": "Complete", "status": "True"}], succeeded=1)
    g.reconcile()
    g.reconcile()
    assert g.kube.writes == [
        ("replace", "status", f"the preparation Job is starting ({WHERE})"),
        ("replace", "status", f"transfer model.safetensors: 1.0 MiB of 3.0 MiB (33%) ({WHERE})"),
        ("replace", "status", f"manifest: 3.0 MiB of 3.0 MiB (99%) ({WHERE})"),
        ("replace", "status", f"published sha256:{'d' * 64} (3.0 MiB)"),
    ]
    assert naming.ANNOTATION_RETRY_OF not in g.obj()["metadata"].get("annotations", {})
    assert g.events() == [
        ("PreparationStarted", f"preparing https://huggingface.co/org/repo in {WHERE}"),
        ("Published", f"published sha256:{'d' * 64}"),
    ]


def test_retries_count_one_way_and_show_the_last_log_lines() -> None:
    g = Ground()
    g.reconcile()
    g.kube.objects[("jobs", SYSTEM, JOB)]["spec"]["backoffLimit"] = 2
    lines = ("t1 info  inspected files=3", "t2 warn  GET model.safetensors: 503, retrying in 1s")
    for attempt in (1, 2, 3):
        g.pod(attempt, "Running", annotations=progress(10 * attempt, 1 << 20))
        g.reconcile()
        g.pod(
            attempt,
            "Failed",
            exit_code=1,
            message=failure("SourceUnavailable", f"503 #{attempt}", *lines),
        )
        g.job_status(failed=attempt - 1)
        g.reconcile()
    g.job_status(
        failed=3,
        conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
    )
    g.reconcile()
    g.reconcile()
    note = "SourceUnavailable: 503 #"
    assert g.status_messages() == [
        f"the preparation Job is starting ({WHERE})",
        f"transfer model.safetensors: 1.0 MiB of 3.0 MiB (10%) ({WHERE})",
        f"retrying in 10s (attempt 2 of 3): {note}1 ({WHERE})",
        f"retrying (attempt 2 of 3): {note}1; transfer model.safetensors: 1.0 MiB of 3.0 MiB "
        f"(20%) ({WHERE})",
        f"retrying in 20s (attempt 3 of 3): {note}2 ({WHERE})",
        f"retrying (attempt 3 of 3): {note}2; transfer model.safetensors: 1.0 MiB of 3.0 MiB "
        f"(30%) ({WHERE})",
        f"gave up after 3 attempts; last error: {note}3",
    ]
    log = f"\nlast worker log lines of {WHERE}:\n" + "\n".join(lines)
    assert g.events() == [
        ("PreparationStarted", f"preparing https://huggingface.co/org/repo in {WHERE}"),
        ("Retrying", f"retrying in 10s (attempt 2 of 3): {note}1{log}"),
        ("Retrying", f"retrying in 20s (attempt 3 of 3): {note}2{log}"),
        (
            "PreparationFailed",
            f"PreparationFailed: gave up after 3 attempts; last error: {note}3{log}",
        ),
    ]


class FakeRegistry:
    def __init__(self, manifests: set[str]) -> None:
        self.manifests = manifests

    def resolve(self, repository: str, tag: str) -> str | None:
        return next(iter(sorted(self.manifests)), None)

    def delete(self, repository: str, digest: str) -> bool:
        if digest in self.manifests:
            self.manifests.remove(digest)
            return True
        return False


def deleted_event(manifests: set[str]) -> str:
    g = Ground()
    fake: Any = g.kube
    g.kube.list = lambda res, namespace=None, selector=None: ([], "1")  # type: ignore[method-assign]
    config = Config(systemNamespace=SYSTEM)
    registry: Any = FakeRegistry(manifests)
    events = EventRecorder(fake)
    finalizer = Finalizer(fake, g.reconciler._caches, config, registry, events, lambda: NOW)
    obj = g.obj()
    obj["metadata"]["deletionTimestamp"] = NOW
    finalizer.finalize(KEY, obj, lambda key, o, desired: None)
    [(reason, message)] = g.events()
    assert reason == "Deleted"
    return message


def test_the_deleted_event_says_whether_an_artifact_was_removed() -> None:
    digest = "sha256:" + "e" * 64
    assert deleted_event({digest}) == (
        f"preparation Job and Secrets removed; artifact {digest} removed"
    )
    assert deleted_event(set()) == "preparation Job and Secrets removed; no artifact to remove"
