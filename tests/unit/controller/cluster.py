"""A ``Manager`` over the in-memory API server of ``fakekube``, its informers fed by hand (see
``Cluster``): the event handlers, the queue and the reconcilers wired as in the controller,
with the interleavings of events and reconciles chosen by the test."""

from __future__ import annotations

from typing import Any

from controller.config import parse_config
from controller.informer import Informer
from controller.kube import JOBS, MODELS
from controller.manager import KeyWorker, Manager
from controller.metrics import Metrics
from controller.naming import ObjectKey
from controller.queue import WorkQueue
from tests.unit.controller.fakekube import FakeKube
from tests.unit.controller.rig import SYSTEM

JSON = dict[str, Any]


class Cluster:
    """A ``Manager`` over the fake API whose informers are fed by hand: ``deliver`` hands each
    informer the changes since its last delivery, in order, as its watch would; ``step``
    reconciles the next key due; ``settle`` alternates both until nothing moves. The queue runs
    on the fake clock, so rechecks stay in the future: only events move the objects."""

    def __init__(self, max_concurrent: int) -> None:
        self.kube = FakeKube()
        config = parse_config(
            {"systemNamespace": SYSTEM, "worker": {"maxConcurrent": max_concurrent}}
        )
        fake: Any = self.kube
        self.manager = manager = Manager(config, fake, "controller-a", None, Metrics())
        manager.queue = WorkQueue(clock=self.kube.clock.monotonic)
        manager.worker = KeyWorker(manager.queue, manager.reconcile, manager.metrics)
        self.informers = [manager.caches.models, manager.caches.cluster_models, manager.caches.jobs]
        self.versions: dict[int, str] = {}

    def add(self, obj: JSON, phase: JSON | None = None) -> ObjectKey:
        meta = obj["metadata"]
        self.kube.seed(MODELS, {**obj, **({"status": phase} if phase else {})}, meta["namespace"])
        return ObjectKey("Model", meta["namespace"], meta["name"])

    def deliver(self) -> None:
        for informer in self.informers:
            self._deliver(informer)

    def _deliver(self, informer: Informer) -> None:
        # Informer.run's loop, one pass: the list the first time, then the watch since then.
        if id(informer) not in self.versions:
            self.versions[id(informer)] = informer._relist()
        informer._watch(self.versions[id(informer)])
        self.versions[id(informer)] = self.kube.resource_version

    def keys(self) -> list[ObjectKey]:
        """The keys due now, taken without reconciling them."""
        keys = []
        while (key := self.manager.queue.get(0)) is not None:
            self.manager.queue.done(key)
            keys.append(key)
        return keys  # type: ignore[return-value]

    def step(self) -> ObjectKey | None:
        key = self.manager.queue.get(0)
        if key is not None:
            self.manager.worker.process(key)
        return key  # type: ignore[return-value]

    def settle(self) -> None:
        for _ in range(50):
            self.deliver()
            if self.step() is None:
                return
            while self.step() is not None:
                pass
        raise AssertionError("the cluster does not settle")

    def status(self, key: ObjectKey) -> JSON:
        found = self.kube.stored(MODELS, key.name, key.namespace)
        assert found is not None
        return dict(found.get("status") or {})

    def ready(self, key: ObjectKey) -> JSON:
        return next(c for c in self.status(key)["conditions"] if c["type"] == "Ready")

    def jobs(self) -> list[str]:
        return sorted(j["metadata"]["name"] for j in self.kube.objects(JOBS, SYSTEM))
