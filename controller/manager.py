"""Wires the controller: informers → event handlers (keys only) → work queue → reconcile workers,
gated by leader election, with metrics and health endpoints and a graceful shutdown.

``KeyWorker`` runs one reconcile per key taken from the queue and turns its outcome into what
the queue does next (docs/controller.md, "Errors and logs"):

    outcome                  queue                               log
    None / seconds           forget the backoff; requeue after   -
    NotFound                 forget (the object is gone: done)   info
    Conflict                 requeue at once (0.2 s)             -
    Forbidden                the longest backoff                 error, naming the missing RBAC
    other ControllerError    per-key backoff                     warning
    any other exception      per-key backoff                     error, with the traceback

Every line logged during one reconcile carries ``key`` and ``reconcile_id`` (structlog
contextvars, bound in the worker thread for the reconcile's duration).

One queue holds the keys of Models and ClusterModels (``ObjectKey``) and of ModelCatalogSources
(``SourceKey``); ``Manager.reconcile`` routes each to its reconciler. A change of a source's
catalog (``CatalogStore``) wakes the catalog Models that may resolve against it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

import structlog

from api import upload
from controller import naming
from controller.caches import InformerCaches
from controller.catalog_import import CatalogImports
from controller.catalog_reconciler import CatalogReconciler, SourceKey
from controller.catalogs import CatalogStore
from controller.config import Config
from controller.dispatch import Dispatcher
from controller.errors import Conflict, ControllerError, Forbidden, NotFound
from controller.events import EventRecorder
from controller.finalizer import Finalizer
from controller.gates import GateController, informer_lookup
from controller.informer import Informer
from controller.kube import (
    CLUSTER_MODELS,
    JOBS,
    MODEL_CATALOG_SOURCES,
    MODELS,
    PODS,
    SECRETS,
    KubeClient,
)
from controller.leader import LeaderElector
from controller.metrics import Metrics
from controller.naming import Kind, ObjectKey
from controller.queue import ShutDown, WorkQueue
from controller.reconciler import Reconciler, now_rfc3339
from controller.registry import RegistryCleaner
from controller.slots import Slots, is_finished
from controller.uploads import UploadSessions

JSON = dict[str, Any]
log = structlog.get_logger("manager")
WORKER_SELECTOR = f"{naming.LABEL_APP}={naming.WORKER_APP}"
CONFLICT_REQUEUE_SECONDS = 0.2  # a newer version exists: read it and decide again, soon
RECONCILE_ID_BYTES = 4
QueueKey = ObjectKey | SourceKey


class _Keyed(Hashable, Protocol):
    @property
    def kind(self) -> str: ...


K = TypeVar("K", bound=_Keyed)


class KeyWorker(Generic[K]):
    """Takes keys from the queue until it shuts down; one reconcile per key (the queue never
    hands one key to two workers), its outcome mapped to the queue's next step (module doc)."""

    def __init__(
        self,
        queue: WorkQueue[K],
        reconcile: Callable[[K], float | None],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._reconcile = reconcile
        self._metrics = metrics
        self._clock = clock

    def run(self) -> None:
        while True:
            try:
                key = self._queue.get()
            except ShutDown:
                return
            if key is not None:
                self.process(key)

    def process(self, key: K) -> None:
        started = self._clock()
        reconcile_id = secrets.token_hex(RECONCILE_ID_BYTES)
        with structlog.contextvars.bound_contextvars(key=str(key), reconcile_id=reconcile_id):
            try:
                result = self._run(key)
            finally:
                self._queue.done(key)
        self._metrics.reconciles.labels(key.kind, result).inc()
        self._metrics.duration.labels(key.kind).observe(self._clock() - started)

    def _run(self, key: K) -> str:
        """Reconciles and schedules what comes next; returns the metric's ``result`` label."""
        try:
            after = self._reconcile(key)
        except NotFound as error:
            self._queue.forget(key)
            log.info("object gone, done", error=str(error))
            return "notfound"
        except Conflict:
            self._queue.add_after(key, CONFLICT_REQUEUE_SECONDS)
            return "conflict"
        except Forbidden as error:
            _log_forbidden(error, self._queue.retry_slowly(key))
            return "forbidden"
        except ControllerError as error:
            delay = self._queue.retry(key)
            log.warning("reconcile failed, retrying", error=str(error), retry_in=delay)
            return "error"
        except Exception:  # a bug: keep the worker, back off the key, show where it happened
            delay = self._queue.retry(key)
            log.exception("reconcile crashed, retrying", retry_in=delay)
            return "error"
        self._queue.forget(key)
        if after:
            self._queue.add_after(key, after)
        return "ok"


def _log_forbidden(error: Forbidden, retry_in: float) -> None:
    permission = error.permission
    if permission is None:  # a 403 of another cause: the API server's words are all there is
        log.error("forbidden", error=str(error), retry_in=retry_in)
    else:
        log.error(
            "forbidden: the controller's RBAC lacks a permission",
            missing=str(permission),
            error=str(error),
            retry_in=retry_in,
        )


class Manager:
    def __init__(
        self,
        config: Config,
        kube: KubeClient,
        identity: str,
        registry: RegistryCleaner | None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.stop = threading.Event()
        self.metrics = metrics or Metrics()
        settings = config.controller
        self.queue: WorkQueue[QueueKey] = WorkQueue(
            settings.retry_base_seconds, settings.retry_max_seconds
        )
        self._uids: dict[str, ObjectKey] = {}
        self._uid_lock = threading.Lock()
        system = config.system_namespace
        self.caches = InformerCaches(
            models=Informer(kube, MODELS, self._on_model("Model"), stop=self.stop),
            cluster_models=Informer(
                kube, CLUSTER_MODELS, self._on_model("ClusterModel"), stop=self.stop
            ),
            jobs=Informer(
                kube,
                JOBS,
                self._on_job,
                namespace=system,
                label_selector=WORKER_SELECTOR,
                stop=self.stop,
            ),
            pods=Informer(
                kube,
                PODS,
                self._on_owned,
                namespace=system,
                label_selector=WORKER_SELECTOR,
                stop=self.stop,
            ),
            # Upload session records: the gateway's progress and commits (docs/upload.md).
            upload_records=Informer(
                kube,
                SECRETS,
                self._on_owned,
                namespace=system,
                label_selector=upload.LABEL_UPLOAD_SESSION,
                stop=self.stop,
            ),
            catalog_sources=Informer(
                kube, MODEL_CATALOG_SOURCES, self._on_catalog_source, stop=self.stop
            ),
        )
        events = EventRecorder(kube)
        self.lookup = informer_lookup(self.caches.models, self.caches.cluster_models)
        self.gates = (
            GateController(
                kube,
                self.lookup,
                events,
                self.stop,
                settings.retry_base_seconds,
                settings.retry_max_seconds,
            )
            if config.webhook.enabled
            else None
        )
        self.slots = Slots(self.caches, config, on_freed=self._wake_next)
        self.dispatcher = Dispatcher(kube, self.caches, config, self.slots)
        uploads = UploadSessions(kube, self.caches, config, registry)
        finalizer = Finalizer(kube, self.caches, config, registry, events, now_rfc3339, uploads)
        self.catalogs = CatalogStore(on_change=self._wake_catalog_models)
        imports = CatalogImports(
            kube, self.caches.catalog_sources, self.catalogs, config.catalog.secrets_namespace
        )
        self.reconciler = Reconciler(
            kube,
            self.caches,
            config,
            self.dispatcher,
            finalizer,
            events,
            uploads,
            on_published=self.metrics.published_bytes.inc,
            catalogs=imports,
        )
        self.elector = (
            LeaderElector(kube, system, identity, settings.leader_election)
            if settings.leader_election.enabled
            else None
        )
        self.catalog_reconciler = CatalogReconciler(
            kube, self.caches.catalog_sources, config.catalog, self.catalogs, events
        )
        self.worker: KeyWorker[QueueKey] = KeyWorker(self.queue, self.reconcile, self.metrics)
        self.metrics.add_gauges(lambda: len(self.queue), self.slots.running, self._phases)

    def reconcile(self, key: QueueKey) -> float | None:
        if isinstance(key, SourceKey):
            return self.catalog_reconciler.reconcile(key)
        return self.reconciler.reconcile(key)

    # ---- event handlers: map to keys, nothing else --------------------------------------------

    def _on_model(self, kind: Kind) -> Any:
        def handle(event: str, obj: JSON) -> None:
            meta = obj["metadata"]
            key = ObjectKey(kind, meta.get("namespace") or "", meta["name"])
            with self._uid_lock:
                if event == "DELETED":
                    self._uids.pop(meta.get("uid", ""), None)
                else:
                    self._uids[meta.get("uid", "")] = key
            if self.slots.observe(key, event, obj):
                self._wake_next()  # it left the slot queue without a slot
            self.queue.add(key)
            if self.gates is not None:
                self.gates.on_model(kind, obj)

        return handle

    def _owner(self, obj: JSON) -> ObjectKey | None:
        uid = (obj["metadata"].get("labels") or {}).get(naming.LABEL_OWNER_UID, "")
        with self._uid_lock:
            return self._uids.get(uid)

    def _on_job(self, event: str, obj: JSON) -> None:
        self.slots.invalidate(job_seen=obj["metadata"]["name"])
        key = self._owner(obj)
        if key is not None:
            self.queue.add(key)
        if event == "DELETED" or is_finished(obj):
            self._wake_queued()  # a slot may have freed

    def _on_owned(self, event: str, obj: JSON) -> None:
        """A worker pod or an upload session record: its owner's key (owner-uid label)."""
        key = self._owner(obj)
        if key is not None:
            self.queue.add(key)

    def _on_catalog_source(self, event: str, obj: JSON) -> None:
        self.queue.add(SourceKey(obj["metadata"]["name"]))

    def _wake_catalog_models(self, source: str) -> None:
        """A source's catalog changed: the Models that import from it (or from whichever
        source is Ready) resolve again."""
        for informer, kind in (
            (self.caches.models, "Model"),
            (self.caches.cluster_models, "ClusterModel"),
        ):
            for obj in informer.items():
                ref = (obj.get("spec") or {}).get("source", {}).get("catalog")
                if ref is not None and ref.get("sourceName") in (None, source):
                    meta = obj["metadata"]
                    self.queue.add(ObjectKey(kind, meta.get("namespace") or "", meta["name"]))  # type: ignore[arg-type]

    def _wake_queued(self) -> None:
        """A Job finished or went, so a slot freed: the waiting objects look again (and their
        queued status shows their new place)."""
        for informer, kind in (
            (self.caches.models, "Model"),
            (self.caches.cluster_models, "ClusterModel"),
        ):
            for obj in informer.items():
                if (obj.get("status") or {}).get("phase") in (None, "Pending"):
                    meta = obj["metadata"]
                    self.queue.add(ObjectKey(kind, meta.get("namespace") or "", meta["name"]))  # type: ignore[arg-type]

    def _wake_next(self, exclude: ObjectKey | None = None) -> None:
        """A slot or a place freed without a Job event (``slots.py``): the oldest waiting
        objects look again; ``exclude`` is the object that gave its slot back (its own retry
        keeps its backoff)."""
        for key in self.slots.next_in_line(exclude):
            self.queue.add(key)

    def _phases(self) -> dict[tuple[str, str], int]:
        counts: Counter[tuple[str, str]] = Counter()
        for informer, kind in (
            (self.caches.models, "Model"),
            (self.caches.cluster_models, "ClusterModel"),
        ):
            for obj in informer.items():
                counts[(kind, (obj.get("status") or {}).get("phase") or "Pending")] += 1
        return dict(counts)

    # ---- running --------------------------------------------------------------------------------

    def ready(self) -> bool:
        return all(i.synced.is_set() for i in self._informers())

    def _informers(self) -> list[Informer]:
        c = self.caches
        gated = [self.gates.pods] if self.gates is not None else []
        informers = [c.models, c.cluster_models, c.jobs, c.pods, c.upload_records]
        return [*informers, c.catalog_sources, *gated]

    def _shutdown_queues(self) -> None:
        self.queue.shutdown()
        if self.gates is not None:
            self.gates.queue.shutdown()

    def run(self) -> int:
        """Runs until ``stop`` is set (0) or leadership is lost (1)."""
        for informer in self._informers():
            informer.start()
        for informer in self._informers():
            while not informer.synced.wait(0.5):
                if self.stop.is_set():
                    return 0
        if self.elector is not None:
            threading.Thread(
                target=self.elector.run, args=(self.stop,), name="leader", daemon=True
            ).start()
            while not self.elector.is_leader.wait(0.5):
                if self.stop.is_set():
                    return 0
        log.info("reconciling", workers=self.config.controller.workers)
        workers = [
            threading.Thread(target=self.worker.run, name=f"reconcile-{i}", daemon=True)
            for i in range(self.config.controller.workers)
        ]
        for thread in workers:
            thread.start()
        if self.gates is not None:
            self.gates.start_workers(self.config.webhook.gate_workers)
        while not self.stop.wait(0.5):
            if self.elector is not None and self.elector.lost.is_set():
                self._shutdown_queues()
                return 1
        self._shutdown_queues()
        for thread in workers:
            thread.join(timeout=30)
        if self.elector is not None:
            self.elector.release()
        return 0
