"""The reconcile core wired to the in-memory API server of ``fakekube``: one ``Reconciler`` with
its ``Dispatcher``, ``Finalizer`` and ``EventRecorder``, caches that are views of the fake's
store, a fake clock and a fixed jitter. Tests play the Job controller and the kubelet by
writing Job and pod status into the fake (``job_status``, ``pod``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from controller import naming
from controller.config import Config, UploadConfig, WorkerConfig
from controller.dispatch import Dispatcher
from controller.events import EventRecorder
from controller.finalizer import Finalizer, ManifestStore
from controller.jobs import JobRequest, build_job
from controller.kube import EVENTS, JOBS, PODS, SECRETS, Resource, model_resource
from controller.naming import ObjectKey
from controller.reconciler import Reconciler
from controller.slots import Slots
from controller.uploads import BlobStore, UploadSessions
from tests.unit.controller.fakekube import FakeKube, fake_caches

JSON = dict[str, Any]
SYSTEM = "d8-ai-models"
UID = "0b7f6c1e-2d3a-4c5b-9e8f-112233445566"
JOB = f"prepare-{UID}"
TOKEN = base64.b64encode(b"hf_secret").decode()
NOW = "2026-01-02T03:04:05Z"
URL = "https://huggingface.co/org/repo"
KEY = ObjectKey("Model", "team-a", "private-model")
GATEWAY = "http://ai-models-upload-gateway.d8-ai-models.svc:8444"


def model(
    url: str = URL,
    auth_secret: str | None = "hf-token",  # noqa: S107
    *,
    name: str = "private-model",
    uid: str = UID,
    created: str = NOW,
    finalizer: bool = True,
    annotations: dict[str, str] | None = None,
) -> JSON:
    source: JSON = {"url": url}
    if auth_secret:
        source["authSecretRef"] = {"name": auth_secret}
    meta: JSON = {
        "name": name,
        "namespace": "team-a",
        "uid": uid,
        "creationTimestamp": created,
        "finalizers": [naming.FINALIZER] if finalizer else [],
        "annotations": annotations or {},
    }
    return {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "Model",
        "metadata": meta,
        "spec": {"source": source},
    }


def token_secret(name: str = "hf-token", token: str = TOKEN) -> JSON:
    return {"metadata": {"name": name}, "type": "Opaque", "data": {"token": token}}


class Rig:
    def __init__(
        self,
        *,
        max_concurrent: int = 2,
        build: Callable[[JobRequest, Config], JSON] = build_job,
        registry: ManifestStore | None = None,
        blobs: BlobStore | None = None,
        upload: UploadConfig | None = None,
    ) -> None:
        self.kube = FakeKube()
        self.clock = self.kube.clock
        self.caches = fake_caches(self.kube, SYSTEM)
        self.config = Config(
            system_namespace=SYSTEM,
            worker=WorkerConfig(max_concurrent=max_concurrent),
            upload=upload or UploadConfig(in_cluster_url=GATEWAY),
        )
        events = EventRecorder(self.kube)
        self.freed: list[ObjectKey] = []
        """The objects whose slot reservation ended without a Job (``Slots.release``)."""
        self.slots = Slots(self.caches, self.config, self.clock.monotonic, self.freed.append)
        self.dispatcher = Dispatcher(self.kube, self.caches, self.config, self.slots, build)
        self.uploads = UploadSessions(self.kube, self.caches, self.config, blobs)
        self.finalizer = Finalizer(
            self.kube,
            self.caches,
            self.config,
            registry,
            events,
            self.clock.rfc3339,
            self.uploads,
        )
        self.published: list[int] = []
        self.reconciler = Reconciler(
            self.kube,
            self.caches,
            self.config,
            self.dispatcher,
            self.finalizer,
            events,
            self.uploads,
            self.clock.rfc3339,
            on_published=self.published.append,
            jitter=lambda: 0.5,
        )

    def reconcile(self, key: ObjectKey = KEY) -> float | None:
        return self.reconciler.reconcile(key)

    def add(self, obj: JSON) -> ObjectKey:
        """A Model (or ClusterModel) as the user created it; its key."""
        meta = obj["metadata"]
        key = ObjectKey(obj["kind"], meta.get("namespace") or "", meta["name"])
        self.kube.seed(model_resource(key.kind), obj, key.namespace or None)
        return key

    def obj(self, key: ObjectKey = KEY) -> JSON:
        found = self.kube.stored(model_resource(key.kind), key.name, key.namespace or None)
        assert found is not None
        return found

    def ready(self, key: ObjectKey = KEY) -> JSON:
        conditions = self.obj(key)["status"]["conditions"]
        return dict(next(c for c in conditions if c["type"] == "Ready"))

    def events(self) -> list[tuple[str, str, str]]:
        return [(e["type"], e["reason"], e["message"]) for e in self.kube.objects(EVENTS)]

    def names(self, res: Resource) -> list[str]:
        return [o["metadata"]["name"] for o in self.kube.objects(res, SYSTEM)]

    def calls(self, *resources: Resource) -> list[str]:
        """The calls to ``resources`` (to all but Events when none is named), as strings."""
        plurals = {r.plural for r in resources} or {
            c.resource for c in self.kube.calls if c.resource != EVENTS.plural
        }
        return [str(c) for c in self.kube.calls if c.resource in plurals]

    def job_status(self, job: str = JOB, **fields: Any) -> None:
        self.kube.set_status(JOBS, job, SYSTEM, fields)

    def pod(
        self,
        i: int,
        phase: str,
        *,
        job: str = JOB,
        exit_code: int | None = None,
        message: str = "",
        annotations: dict[str, str] | None = None,
    ) -> None:
        """Pod ``i`` of ``job`` as the kubelet reports it; a terminated worker when
        ``exit_code`` is set."""
        owner = self.kube.stored(JOBS, job, SYSTEM)
        labels = {"job-name": job, naming.LABEL_APP: naming.WORKER_APP}
        if owner is not None:
            labels.update(owner["metadata"].get("labels") or {})
        status: JSON = {"phase": phase}
        if exit_code is not None:
            terminated = {"exitCode": exit_code, "reason": "Error", "message": message}
            status["containerStatuses"] = [{"name": "worker", "state": {"terminated": terminated}}]
        meta = {
            "name": f"{job}-{i}",
            "uid": f"pod-{i}",
            "labels": labels,
            "annotations": annotations or {},
            "creationTimestamp": f"2026-01-02T03:0{i}:00Z",
        }
        self.kube.seed(PODS, {"metadata": meta, "status": status}, SYSTEM)

    def secret(self, name: str = "hf-token", token: str = TOKEN) -> None:
        self.kube.seed(SECRETS, token_secret(name, token), "team-a")


def progress(percent: int, done: int, stage: str = "transfer") -> dict[str, str]:
    detail: JSON = {"stage": stage, "bytesDone": done, "bytesTotal": 3 << 20}
    if stage == "transfer":
        detail["file"] = "model.safetensors"
    return {
        "ai.deckhouse.io/progress": str(percent),
        "ai.deckhouse.io/progress-detail": json.dumps(detail),
    }
