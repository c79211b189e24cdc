"""Wires the controller: informers → event handlers (keys only) → work queue → reconcile workers,
gated by leader election, with metrics and health endpoints and a graceful shutdown.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import structlog

from controller import naming
from controller.config import Config
from controller.dispatch import Dispatcher, is_finished
from controller.errors import Conflict
from controller.events import EventRecorder
from controller.finalizer import Finalizer
from controller.gates import GateController, informer_lookup
from controller.informer import Informer
from controller.kube import CLUSTER_MODELS, JOBS, MODELS, PODS, KubeClient
from controller.leader import LeaderElector
from controller.metrics import Metrics
from controller.naming import Kind, ObjectKey
from controller.queue import ShutDown, WorkQueue
from controller.reconciler import Caches, Reconciler, now_rfc3339
from controller.registry import RegistryCleaner

JSON = dict[str, Any]
log = structlog.get_logger("manager")
WORKER_SELECTOR = f"{naming.LABEL_APP}={naming.WORKER_APP}"


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
        self.queue: WorkQueue[ObjectKey] = WorkQueue(
            settings.retry_base_seconds, settings.retry_max_seconds
        )
        self._uids: dict[str, ObjectKey] = {}
        self._uid_lock = threading.Lock()
        system = config.system_namespace
        self.caches = Caches(
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
                self._on_pod,
                namespace=system,
                label_selector=WORKER_SELECTOR,
                stop=self.stop,
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
        self.dispatcher = Dispatcher(kube, self.caches, config)
        finalizer = Finalizer(kube, self.caches, config, registry, events, now_rfc3339)
        self.reconciler = Reconciler(
            kube,
            self.caches,
            config,
            self.dispatcher,
            finalizer,
            events,
            on_published=self.metrics.published_bytes.inc,
        )
        self.elector = (
            LeaderElector(kube, system, identity, settings.leader_election)
            if settings.leader_election.enabled
            else None
        )
        self.metrics.add_gauges(lambda: len(self.queue), self.dispatcher.running, self._phases)

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
            self.dispatcher.invalidate()
            self.queue.add(key)
            if self.gates is not None:
                self.gates.on_model(kind, obj)

        return handle

    def _owner(self, obj: JSON) -> ObjectKey | None:
        uid = (obj["metadata"].get("labels") or {}).get(naming.LABEL_OWNER_UID, "")
        with self._uid_lock:
            return self._uids.get(uid)

    def _on_job(self, event: str, obj: JSON) -> None:
        self.dispatcher.invalidate(job_seen=obj["metadata"]["name"])
        key = self._owner(obj)
        if key is not None:
            self.queue.add(key)
        if event == "DELETED" or is_finished(obj):
            self._wake_queued()  # a slot may have freed

    def _on_pod(self, event: str, obj: JSON) -> None:
        key = self._owner(obj)
        if key is not None:
            self.queue.add(key)

    def _wake_queued(self) -> None:
        for informer, kind in (
            (self.caches.models, "Model"),
            (self.caches.cluster_models, "ClusterModel"),
        ):
            for obj in informer.items():
                if (obj.get("status") or {}).get("phase") in (None, "Pending"):
                    meta = obj["metadata"]
                    self.queue.add(ObjectKey(kind, meta.get("namespace") or "", meta["name"]))  # type: ignore[arg-type]

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
        return [c.models, c.cluster_models, c.jobs, c.pods, *gated]

    def _work(self) -> None:
        while True:
            try:
                key = self.queue.get()
            except ShutDown:
                return
            if key is None:
                continue
            self._process(key)

    def _process(self, key: ObjectKey) -> None:
        started, result = time.monotonic(), "ok"
        try:
            after = self.reconciler.reconcile(key)
            self.queue.forget(key)
            if after:
                self.queue.add_after(key, after)
        except Conflict:
            result = "conflict"
            self.queue.add_after(key, 0.2)  # a newer version exists; read it and decide again
        except Exception as error:  # noqa: BLE001 - any failure: back off this key, keep the worker
            result = "error"
            delay = self.queue.retry(key)
            log.warning(
                "reconcile failed, retrying", key=str(key), error=str(error), retry_in=delay
            )
        finally:
            self.queue.done(key)
            self.metrics.reconciles.labels(key.kind, result).inc()
            self.metrics.duration.labels(key.kind).observe(time.monotonic() - started)

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
            threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
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
