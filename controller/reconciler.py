"""``reconcile(key)`` for Model and ClusterModel: observe → decide → act.

Observe reads the informer caches (the object, its Job, the Job's pods); decide is the pure
code of ``status``/``outcome``; act writes through the facade: finalizer, Job (+ token Secret),
status when it changed, Events. The outcome is ``None`` (done) or seconds to requeue after;
errors are raised for the runner to map (``NotFound``: the object went away mid-reconcile,
done; ``Conflict``: again soon; ``Forbidden``: logged loudly; the rest: per-key backoff).

An upload source (``spec.source.upload``, docs/upload.md) first waits for its bytes: the
session is issued (``uploads.py``), the gateway's progress in the session record is mirrored
into the status, and the committed blob becomes the Job's source; Ready, Failed and deletion
end the session.

A catalog source (``spec.source.catalog``, docs/catalog.md) resolves against the catalogs in
memory (``catalog_import``) each time it has no Job; until one entry resolves the object is
Pending with the resolution's reason, woken when a source's catalog changes. The grant is asked
once the Job has a slot; ``status.source`` (the source, entry, revision and remote digest) is
frozen when the Job is created and kept until the next attempt.

Workers reconcile different keys at once. Only the admission to a preparation slot is
serialised (``Slots.admit``); the API writes of a start run outside that lock. An object
blocked on its auth Secret checks the Secret before it asks for a slot, so it never holds a
reservation only to give it back (docs/controller.md, "Slots and concurrent workers").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import structlog

from api import upload
from controller import naming, status
from controller.caches import Caches
from controller.catalog_import import CatalogImports, provenance
from controller.catalogs import Entry
from controller.config import Config
from controller.dispatch import Dispatcher, JobSource
from controller.errors import CatalogError, Conflict, JobRenderFailed, PreparationBlocked
from controller.events import EventRecorder
from controller.finalizer import Finalizer
from controller.kube import KubeApi, model_resource
from controller.naming import ObjectKey
from controller.outcome import Failed, Running, Settling, Succeeded, job_outcome
from controller.slots import AUTH_SECRET_REASONS
from controller.uploads import ProgressView, UploadSessions, progress_view, rfc3339

JSON = dict[str, Any]
log = structlog.get_logger("reconciler")
UNSUPPORTED_SOURCES = ("catalog",)
# A Secret the Model names is read with `get` only (no list/watch of Secrets: docs/security.md),
# so a missing one is rechecked: soon at first, then less often; any change to the Model
# rechecks at once.
BLOCKED_RECHECK_FIRST_SECONDS = 2.0
BLOCKED_RECHECK_SECONDS = 30.0
MAX_MESSAGE = 1024  # of a render failure's detail in the condition message
QUEUED_RECHECK_SECONDS = 60.0  # a freed slot or place wakes queued objects (slots.py); a net
# An uploaded archive may unpack to at most this many times the session's size limit.
EXPANSION_FACTOR = 4


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Reconciler:
    def __init__(
        self,
        kube: KubeApi,
        caches: Caches,
        config: Config,
        dispatcher: Dispatcher,
        finalizer: Finalizer,
        events: EventRecorder,
        uploads: UploadSessions,
        clock: Callable[[], str] = now_rfc3339,
        on_published: Callable[[int], None] = lambda size: None,
        jitter: Callable[[], float] = random.random,
        catalogs: CatalogImports | None = None,
    ) -> None:
        self._kube = kube
        self._caches = caches
        self._config = config
        self._dispatch = dispatcher
        self._slots = dispatcher.slots
        self._finalizer = finalizer
        self._events = events
        self._uploads = uploads
        self._now = clock
        self._on_published = on_published
        self._jitter = jitter
        self._catalogs = catalogs
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
        unsupported = UNSUPPORTED_SOURCES if self._catalogs is None else ()
        kind = next((k for k in unsupported if k in source), None)
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
            if "upload" in old:  # a session whose end was not written yet (see _finish)
                self._write_final(key, obj, dict(old))
            return None
        name = naming.job_name(meta["uid"], retry)
        job = self._caches.job(self._config.system_namespace, name)
        if job is None:
            if self._slots.just_created(name):
                return None  # the Job informer's event brings it back
            if "upload" in source:
                return self._upload(key, obj, retry)
            if "catalog" in source:
                return self._catalog(key, obj, retry)
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

    def _write_final(self, key: ObjectKey, obj: JSON, desired: JSON) -> JSON | None:
        """Writes a Ready or Failed status; for an upload the session ends first (its Secrets
        and staging blob go; ``status.upload`` with them). A staging blob the registry does
        not delete stays (a Warning Event says so): it must not hold the verdict back."""
        if "upload" in obj["spec"]["source"]:
            problem = self._uploads.close(key, obj, strict=False)
            if problem:
                log.warning("upload session cleanup incomplete", key=str(key), problem=problem)
                self._events.emit(obj, "Warning", "UploadCleanupIncomplete", problem)
            desired = {k: v for k, v in desired.items() if k != "upload"}
        return self._write_status(key, obj, desired)

    # ---- start: a slot, a Job ------------------------------------------------------------------

    def _start(
        self,
        key: ObjectKey,
        obj: JSON,
        retry: str,
        source: JobSource | None = None,
        frozen: JSON | None = None,
    ) -> float | None:
        """``frozen``: the ``status.source`` written with the Job (a catalog import's)."""
        if status.ready_condition(obj).get("reason") in AUTH_SECRET_REASONS:
            still = self._recheck_secret(key, obj)
            if still is not None:
                return still
        # Admission is decided (and the slot reserved) under the slot queue's lock; the writes
        # that follow run outside it, so workers starting other objects do not wait on them.
        queued = self._slots.admit(key, obj, retry)
        if queued is not None:
            desired = status.queued(*self._base(obj), queued.position, queued.running, queued.limit)
            self._write_status(key, obj, desired)
            return QUEUED_RECHECK_SECONDS
        try:
            obj = self._dispatch.create_job(key, obj, retry, source)
        except (PreparationBlocked, CatalogError) as blocked:
            return self._blocked(key, obj, blocked)
        except JobRenderFailed as failure:
            self._render_failed(key, obj, retry, failure)
            return None
        self._rechecks.pop(key, None)
        job = f"{self._config.system_namespace}/{naming.job_name(obj['metadata']['uid'], retry)}"
        what = source.description if source else obj["spec"]["source"].get("url")
        self._events.emit(obj, "Normal", "PreparationStarted", f"preparing {what} in Job {job}")
        desired = status.publishing(*self._base(obj), None, None, "Publishing", job, source=frozen)
        # On a conflict a newer version of the object is coming; its reconcile writes the status.
        with contextlib.suppress(Conflict):
            self._write_status(key, obj, desired)
        return None

    def _recheck_secret(self, key: ObjectKey, obj: JSON) -> float | None:
        """An object blocked on its auth Secret reads it before it asks for a slot: while still
        blocked it takes no place in the queue and no slot (a reservation given back without a
        Job frees a slot that no Job event announces). The blocked recheck delay, or ``None``
        once the Secret is usable."""
        try:
            self._dispatch.read_token(key, obj)
        except PreparationBlocked as blocked:
            return self._blocked(key, obj, blocked)
        return None

    def _blocked(
        self, key: ObjectKey, obj: JSON, blocked: PreparationBlocked | CatalogError
    ) -> float:
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
        if self._write_final(key, obj, status.failed(*self._base(obj), failure.reason, message)):
            self._events.emit(obj, "Warning", "PreparationFailed", f"{failure.reason}: {message}")

    # ---- catalog: resolve, then a Job with a grant -----------------------------------------------

    def _catalog(self, key: ObjectKey, obj: JSON, retry: str) -> float | None:
        assert self._catalogs is not None  # without them catalog sources are unsupported
        found = self._catalogs.resolve(obj["spec"]["source"]["catalog"])
        if isinstance(found, Entry):
            source = self._catalogs.job_source(found)
            return self._start(key, obj, retry, source, provenance(found))
        before = status.ready_condition(obj)
        desired = status.blocked(*self._base(obj), found.reason, found.message)
        if self._write_status(key, obj, desired) and (
            before.get("reason"),
            before.get("message"),
        ) != (found.reason, found.message):
            self._events.emit(obj, "Warning", found.reason, found.message)
        return None  # a change of any source's catalog wakes it (manager)

    # ---- upload: a session, its progress, then a Job --------------------------------------------

    def _upload(self, key: ObjectKey, obj: JSON, retry: str) -> float | None:
        """Before the Job of an upload: issue the session, mirror its progress, start the Job
        once the bytes are committed, fail it once it expired without them."""
        if not self._config.upload.in_cluster_url:
            reason, message = "UploadGatewayNotConfigured", status.UPLOAD_GATEWAY_NOT_CONFIGURED
            self._write_status(key, obj, status.blocked(*self._base(obj), reason, message))
            return None  # a configuration change restarts the controller
        session = upload.session_name(obj["metadata"]["uid"], retry)
        issued = (obj.get("status") or {}).get("upload") or {}
        if issued.get("secretName") != session:
            return self._issue(key, obj, session)
        record = self._uploads.record(session)
        if record is not None and record.committed is not None:
            committed, repository = record.committed, record.staging_repository
            source = JobSource(
                upload.worker_source(
                    self._config.registry.host, repository, committed.digest, committed.filename
                ),
                (repository,),
                f"the upload {committed.filename} ({committed.digest})",
                EXPANSION_FACTOR * self._config.upload.size_limit_bytes,
            )
            return self._start(key, obj, retry, source)
        now = parse_rfc3339(self._now())
        left = (parse_rfc3339(issued["expiresAt"]) - now).total_seconds()
        if left <= 0:
            self._expire(key, obj, retry, issued["expiresAt"])
            return None
        progress = record.upload if record is not None else None
        if progress is None:
            where, expires = issued["secretNamespace"], issued["expiresAt"]
            view = ProgressView(status.upload_waiting_message(where, session, expires), None, None)
        else:
            view = progress_view(progress, now)
        desired = status.waiting_for_upload(*self._base(obj), issued, view.message, view.percent)
        self._write_status(key, obj, desired)
        return round(min(left, view.stale_in or left), 3)

    def _issue(self, key: ObjectKey, obj: JSON, session: str) -> float:
        issued = self._uploads.issue(key, obj, session, parse_rfc3339(self._now()))
        expires = rfc3339(issued.expires_at)
        upload_status = {
            "secretName": issued.secret_name,
            "secretNamespace": issued.secret_namespace,
            "expiresAt": expires,
        }
        message = status.upload_waiting_message(issued.secret_namespace, session, expires)
        desired = status.waiting_for_upload(*self._base(obj), upload_status, message, None)
        if self._write_status(key, obj, desired):
            log.info("upload session issued", key=str(key), session=session)
            self._events.emit(obj, "Normal", "WaitForUpload", message)
        return max((issued.expires_at - parse_rfc3339(self._now())).total_seconds(), 0.0)

    def _expire(self, key: ObjectKey, obj: JSON, retry: str, expires: str) -> None:
        obj = self._dispatch.record_attempt(key, obj, retry)
        message = (
            f"the upload session expired at {expires} before an upload was committed; set a "
            f"new value of the {naming.RETRY_ANNOTATION} annotation for a new session"
        )
        if self._write_final(key, obj, status.failed(*self._base(obj), "UploadExpired", message)):
            log.info("upload session expired", key=str(key))
            self._events.emit(obj, "Warning", "UploadExpired", message)

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
            if self._write_final(key, obj, status.ready(*self._base(obj), outcome.result)):
                artifact = outcome.result.artifact
                log.info("model published", key=str(key), job=where, digest=artifact.digest)
                self._events.emit(obj, "Normal", "Published", f"published {artifact.digest}")
                self._on_published(artifact.size_bytes or 0)
        elif isinstance(outcome, Failed):
            desired = status.failed(*self._base(obj), outcome.reason, outcome.message)
            if self._write_final(key, obj, desired):
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
