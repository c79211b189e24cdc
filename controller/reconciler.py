"""``reconcile(key)`` for Model and ClusterModel: observe → decide → act.

Observe reads the informer caches (the object, its Job, the Job's pods); decide is the pure
code of ``status``/``outcome``; act writes through the facade: finalizer, Job (+ token Secret),
status when it changed, Events. The outcome is ``None`` (done) or seconds to requeue after;
errors are raised for the runner to map (``NotFound``: the object went away mid-reconcile,
done; ``Conflict``: again soon; ``Forbidden``: logged loudly; the rest: per-key backoff).

Workers reconcile different keys at once. Only the admission to a preparation slot is
serialised (``Dispatcher.admit``); the API writes of a start run outside that lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import structlog

from controller import naming, status
from controller.caches import Caches
from controller.config import Config
from controller.dispatch import Dispatcher
from controller.errors import Conflict, JobRenderFailed, PreparationBlocked
from controller.events import EventRecorder
from controller.finalizer import Finalizer
from controller.kube import KubeApi, model_resource
from controller.naming import ObjectKey
from controller.outcome import Failed, Running, Settling, Succeeded, job_outcome

JSON = dict[str, Any]
log = structlog.get_logger("reconciler")
UNSUPPORTED_SOURCES = ("upload", "catalog")
# A Secret the Model names is read with `get` only (no list/watch of Secrets: docs/security.md),
# so a missing one is rechecked: soon at first, then less often; any change to the Model
# rechecks at once.
BLOCKED_RECHECK_FIRST_SECONDS = 2.0
BLOCKED_RECHECK_SECONDS = 30.0
MAX_MESSAGE = 1024  # of a render failure's detail in the condition message
QUEUED_RECHECK_SECONDS = 300.0  # slots freeing wake queued objects at once (manager)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(
        self,
        kube: KubeApi,
        caches: Caches,
        config: Config,
        dispatcher: Dispatcher,
        finalizer: Finalizer,
        events: EventRecorder,
        clock: Callable[[], str] = now_rfc3339,
        on_published: Callable[[int], None] = lambda size: None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._kube = kube
        self._caches = caches
        self._config = config
        self._dispatch = dispatcher
        self._finalizer = finalizer
        self._events = events
        self._now = clock
        self._on_published = on_published
        self._jitter = jitter
        self._rechecks: dict[ObjectKey, int] = {}
        """Rechecks in a row of an object blocked on its auth Secret (for the backoff)."""

    def reconcile(self, key: ObjectKey) -> float | None:
        obj = self._caches.object(key)
        if obj is None:
            self._rechecks.pop(key, None)
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
            desired = status.blocked(*self._base(obj), "SourceKindNotSupported", message)
            self._write_status(key, obj, desired)
            return None
        old = obj.get("status") or {}
        retry = (meta.get("annotations") or {}).get(naming.RETRY_ANNOTATION, "")
        # The empty retry value is recorded as no annotation at all.
        attempted = (meta.get("annotations") or {}).get(naming.ANNOTATION_RETRY_OF, "")
        if old.get("phase") == "Ready" or (old.get("phase") == "Failed" and attempted == retry):
            return None
        name = naming.job_name(meta["uid"], retry)
        job = self._caches.job(self._config.system_namespace, name)
        if job is None:
            if self._dispatch.just_created(name):
                return None  # the Job informer's event brings it back
            return self._start(key, obj, retry)
        self._rechecks.pop(key, None)
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

    def _base(self, obj: JSON) -> tuple[JSON, int, str]:
        """What every ``status`` builder starts from: the old status, the generation, now."""
        return obj.get("status") or {}, obj["metadata"].get("generation", 1), self._now()

    # ---- start: a slot, a Job ------------------------------------------------------------------

    def _start(self, key: ObjectKey, obj: JSON, retry: str) -> float | None:
        # Admission is decided (and the slot reserved) under the dispatcher's lock; the writes
        # that follow run outside it, so workers starting other objects do not wait on them.
        queued = self._dispatch.admit(key, obj, retry)
        if queued is not None:
            desired = status.queued(*self._base(obj), queued.position, queued.running, queued.limit)
            self._write_status(key, obj, desired)
            return QUEUED_RECHECK_SECONDS
        try:
            obj = self._dispatch.create_job(key, obj, retry)
        except PreparationBlocked as blocked:
            return self._blocked(key, obj, blocked)
        except JobRenderFailed as failure:
            self._render_failed(key, obj, retry, failure)
            return None
        self._rechecks.pop(key, None)
        job = f"{self._config.system_namespace}/{naming.job_name(obj['metadata']['uid'], retry)}"
        url = obj["spec"]["source"].get("url")
        self._events.emit(obj, "Normal", "PreparationStarted", f"preparing {url} in Job {job}")
        desired = status.publishing(*self._base(obj), None, None, "Publishing", job)
        # On a conflict a newer version of the object is coming; its reconcile writes the status.
        with contextlib.suppress(Conflict):
            self._write_status(key, obj, desired)
        return None

    def _blocked(self, key: ObjectKey, obj: JSON, blocked: PreparationBlocked) -> float:
        """Waits for the user (a Secret to create or fix): an Event when the cause changes, a
        recheck after 2 s, doubling up to 30 s, each ±20 %."""
        before = status.ready_condition(obj)
        message = str(blocked)
        desired = status.blocked(*self._base(obj), blocked.reason, message)
        if self._write_status(key, obj, desired) and (
            before.get("reason"),
            before.get("message"),
        ) != (blocked.reason, message):
            log.info("preparation blocked", key=str(key), reason=blocked.reason)
            self._events.emit(obj, "Warning", blocked.reason, message)
        checks = self._rechecks.get(key, 0)
        self._rechecks[key] = checks + 1
        delay = min(
            BLOCKED_RECHECK_FIRST_SECONDS * float(1 << min(checks, 8)), BLOCKED_RECHECK_SECONDS
        )
        return round(delay * (0.8 + 0.4 * self._jitter()), 3)

    def _render_failed(
        self, key: ObjectKey, obj: JSON, retry: str, failure: JobRenderFailed
    ) -> None:
        """Terminal for this attempt: the same retry value would render the same Job."""
        log.error("preparation Job not rendered", key=str(key), error=str(failure))
        obj = self._dispatch.record_attempt(key, obj, retry)
        message = (
            f"the preparation Job could not be created: {failure}"[:MAX_MESSAGE]
            + f"; set a new {naming.RETRY_ANNOTATION} annotation value to try again"
        )
        if self._write_status(key, obj, status.failed(*self._base(obj), failure.reason, message)):
            self._events.emit(obj, "Warning", "PreparationFailed", f"{failure.reason}: {message}")

    # ---- mirror: the Job's progress and verdict --------------------------------------------------

    def _mirror(self, key: ObjectKey, obj: JSON, job: JSON) -> float | None:
        name = job["metadata"]["name"]
        where = f"{self._config.system_namespace}/{name}"
        outcome = job_outcome(job, self._caches.pods_of(name))
        if isinstance(outcome, Settling):
            return None  # the Job's verdict is a moment away: the status does not step back
        if isinstance(outcome, Running):
            self._running(key, obj, outcome, where)
        elif isinstance(outcome, Succeeded):
            if self._write_status(key, obj, status.ready(*self._base(obj), outcome.result)):
                artifact = outcome.result.artifact
                log.info("model published", key=str(key), job=where, digest=artifact.digest)
                self._events.emit(obj, "Normal", "Published", f"published {artifact.digest}")
                self._on_published(artifact.size_bytes or 0)
        elif isinstance(outcome, Failed):
            desired = status.failed(*self._base(obj), outcome.reason, outcome.message)
            if self._write_status(key, obj, desired):
                log.info("preparation failed", key=str(key), job=where, reason=outcome.reason)
                message = status.with_log(
                    f"{outcome.reason}: {outcome.message}", where, outcome.log
                )
                self._events.emit(obj, "Warning", "PreparationFailed", message)
        return None

    def _running(self, key: ObjectKey, obj: JSON, outcome: Running, job: str) -> None:
        last = outcome.last_failure
        note = status.retry_note(outcome.attempt, outcome.attempts, last, outcome.retry_in)
        reason = last.reason if note and last else "Publishing"
        old_message = str(status.ready_condition(obj).get("message", ""))
        waiting = outcome.retry_in is not None
        desired = status.publishing(*self._base(obj), outcome.progress, note, reason, job, waiting)
        written = self._write_status(key, obj, desired)
        counted = f"(attempt {outcome.attempt} of {outcome.attempts})"
        if written and note and last and counted not in old_message:
            self._events.emit(obj, "Warning", "Retrying", status.with_log(note, job, last.log))
