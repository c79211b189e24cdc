"""``reconcile(key)`` for Model and ClusterModel: observe → decide → act.

Observe reads the informer caches (the object, its Job, the Job's pods); decide is the pure
code of ``status``/``outcome``; act writes through the facade: finalizer, Job (+ token Secret),
status when it changed, Events. The outcome is ``None`` (done) or seconds to requeue after;
an exception makes the runner retry the key with backoff.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from controller import naming, status
from controller.config import Config
from controller.dispatch import Dispatcher
from controller.errors import Conflict, JobRenderFailed, PreparationBlocked
from controller.events import EventRecorder
from controller.finalizer import Finalizer
from controller.informer import Informer
from controller.kube import KubeClient, model_resource
from controller.naming import ObjectKey
from controller.outcome import Failed, Running, Succeeded, job_outcome

JSON = dict[str, Any]
log = structlog.get_logger("reconciler")
UNSUPPORTED_SOURCES = ("upload", "catalog")
BLOCKED_RECHECK_SECONDS = 30.0
MAX_MESSAGE = 1024  # of a render failure's detail in the condition message
QUEUED_RECHECK_SECONDS = 300.0  # slots freeing wake queued objects at once (manager)


@dataclass
class Caches:
    models: Informer
    cluster_models: Informer
    jobs: Informer
    pods: Informer

    def object(self, key: ObjectKey) -> JSON | None:
        informer = self.models if key.kind == "Model" else self.cluster_models
        return informer.get(f"{key.namespace}/{key.name}")

    def job(self, namespace: str, name: str) -> JSON | None:
        return self.jobs.get(f"{namespace}/{name}")

    def pods_of(self, job_name: str) -> list[JSON]:
        return [
            p
            for p in self.pods.items()
            if p["metadata"].get("labels", {}).get("job-name") == job_name
        ]


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(
        self,
        kube: KubeClient,
        caches: Caches,
        config: Config,
        dispatcher: Dispatcher,
        finalizer: Finalizer,
        events: EventRecorder,
        clock: Callable[[], str] = now_rfc3339,
        on_published: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._kube = kube
        self._caches = caches
        self._config = config
        self._dispatch = dispatcher
        self._finalizer = finalizer
        self._events = events
        self._now = clock
        self._on_published = on_published
        self._slots = threading.Lock()

    def reconcile(self, key: ObjectKey) -> float | None:
        obj = self._caches.object(key)
        if obj is None:
            return None  # deleted: nothing to do
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return self._finalizer.finalize(key, obj, self._write_status)
        if naming.FINALIZER not in (meta.get("finalizers") or []):
            obj = self._add_finalizer(key, obj)
        source = obj["spec"]["source"]
        kind = next((k for k in UNSUPPORTED_SOURCES if k in source), None)
        if kind:
            message = (
                f"spec.source.{kind} is not handled by this controller version yet; "
                "no preparation Job was created"
            )
            self._write(key, obj, status.blocked, "SourceKindNotSupported", message)
            return None
        old = obj.get("status") or {}
        retry = (meta.get("annotations") or {}).get(naming.RETRY_ANNOTATION, "")
        attempted = (meta.get("annotations") or {}).get(naming.ANNOTATION_RETRY_OF)
        if old.get("phase") == "Ready" or (old.get("phase") == "Failed" and attempted == retry):
            return None
        job = self._caches.job(self._config.system_namespace, naming.job_name(meta["uid"], retry))
        if job is None:
            return self._start(key, obj, retry)
        return self._mirror(key, obj, job)

    # ---- act helpers --------------------------------------------------------------------------

    def _add_finalizer(self, key: ObjectKey, obj: JSON) -> JSON:
        meta = obj["metadata"]
        patch = {
            "metadata": {
                "finalizers": [*(meta.get("finalizers") or []), naming.FINALIZER],
                "resourceVersion": meta["resourceVersion"],
            }
        }
        return self._kube.merge_patch(
            model_resource(key.kind), key.name, patch, key.namespace or None
        )

    def _write_status(self, key: ObjectKey, obj: JSON, desired: JSON) -> JSON | None:
        """Writes ``desired`` when it differs from the current status; returns the object as
        written, or ``None`` when nothing changed."""
        if (obj.get("status") or {}) == desired:
            return None
        body = {**obj, "status": desired}
        return self._kube.replace(
            model_resource(key.kind), key.name, body, key.namespace or None, "status"
        )

    def _write(
        self, key: ObjectKey, obj: JSON, builder: Callable[..., JSON], *args: Any
    ) -> JSON | None:
        old = obj.get("status") or {}
        desired = builder(old, obj["metadata"].get("generation", 1), self._now(), *args)
        return self._write_status(key, obj, desired)

    # ---- start: a slot, a Job ------------------------------------------------------------------

    def _start(self, key: ObjectKey, obj: JSON, retry: str) -> float | None:
        with self._slots:
            position, running = self._dispatch.queue_position(key, obj)
            limit = self._config.worker.max_concurrent
            if position > limit - running:
                queue_at = max(position - (limit - running), 1)
                self._write(key, obj, status.queued, queue_at, running, limit)
                return QUEUED_RECHECK_SECONDS
            try:
                obj = self._dispatch.create_job(key, obj, retry)
            except PreparationBlocked as blocked:
                self._write(key, obj, status.blocked, blocked.reason, str(blocked))
                return BLOCKED_RECHECK_SECONDS
            except JobRenderFailed as failure:
                self._render_failed(key, obj, retry, failure)
                return None
        url = obj["spec"]["source"].get("url")
        self._events.emit(obj, "Normal", "PreparationStarted", f"preparing {url}")
        # On a conflict a newer version of the object is coming; its reconcile writes the status.
        with contextlib.suppress(Conflict):
            self._write(key, obj, status.publishing, None, None)
        return None

    def _render_failed(
        self, key: ObjectKey, obj: JSON, retry: str, failure: JobRenderFailed
    ) -> None:
        """Terminal for this attempt: the same retry value would render the same Job."""
        log.error("preparation Job not rendered", key=str(key), error=str(failure))
        obj = self._dispatch.record_attempt(key, retry)
        message = (
            f"the preparation Job could not be created: {failure}"[:MAX_MESSAGE]
            + f"; set a new {naming.RETRY_ANNOTATION} annotation value to try again"
        )
        if self._write(key, obj, status.failed, failure.reason, message):
            self._events.emit(obj, "Warning", "PreparationFailed", f"{failure.reason}: {message}")

    # ---- mirror: the Job's progress and verdict --------------------------------------------------

    def _mirror(self, key: ObjectKey, obj: JSON, job: JSON) -> float | None:
        outcome = job_outcome(job, self._caches.pods_of(job["metadata"]["name"]))
        if isinstance(outcome, Running):
            note, reason = None, "Publishing"
            if outcome.attempt > 1 and outcome.last_failure is not None:
                last = outcome.last_failure
                attempt = f"attempt {outcome.attempt}/{outcome.attempts}"
                note = f"retrying ({attempt}): {last.reason}: {last.message}"
                reason = last.reason
            old_message = str(status.ready_condition(obj).get("message", ""))
            if (
                self._write(key, obj, status.publishing, outcome.progress, note, reason)
                and note
                and note not in old_message
            ):
                self._events.emit(obj, "Warning", "Retrying", note)
        elif isinstance(outcome, Succeeded):
            if self._write(key, obj, status.ready, outcome.result):
                artifact = outcome.result.artifact
                self._events.emit(obj, "Normal", "Published", f"published {artifact.digest}")
                self._on_published(artifact.size_bytes or 0)
        elif isinstance(outcome, Failed) and self._write(
            key, obj, status.failed, outcome.reason, outcome.message
        ):
            self._events.emit(
                obj, "Warning", "PreparationFailed", f"{outcome.reason}: {outcome.message}"
            )
        return None
