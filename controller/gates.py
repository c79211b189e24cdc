"""The scheduling gate ``ai.deckhouse.io/model-ready``: held while a pod's models are not Ready.

The pod webhook gates a consuming pod whose models are not all Ready and labels it
``ai.deckhouse.io/model-gated=true``; this controller watches only pods with that label.

- ``decide`` (pure): the pod, the observed models and the cause this controller last announced
  for the pod → ``Lift`` (every model Ready: the digests of that moment) or ``Wait`` (the
  message, and whether it is worth an annotation update or an Event). An Event is emitted for
  the first cause a pod waits for (the webhook wrote it into the annotation; a pod does not
  exist yet at admission, so the Event is this controller's) and whenever it changes (missing →
  Publishing → Failed …); the progress alone updates the annotation at most once per 25 points.
  What was announced is kept in memory: a restarted controller announces each waiting pod once
  more.
- ``act``: ``Lift`` is ONE merge patch, guarded by the pod's resourceVersion, that writes the
  digests, drops the waiting annotation and the label, and removes the gate — the init
  container can never start without the digests. ``Wait`` patches the annotation and emits
  ``ModelNotReady``.

``GateController`` wires it: a pod informer (label selector), an index model → pods built from
that cache (a model event queues exactly the pods that name it), a work queue and workers.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import structlog

from api.protocol import ANNOTATION_DIGESTS, ANNOTATION_WAITING, LABEL_GATED, SCHEDULING_GATE
from controller.consumption import (
    ConsumptionRefused,
    Digest,
    ModelLookup,
    ModelRef,
    Waiting,
    digests_annotation,
    parse_references,
    readiness,
    waiting_cause,
)
from controller.errors import Conflict
from controller.events import EventRecorder
from controller.informer import Informer, object_key
from controller.kube import JSON, PODS, KubeClient
from controller.naming import Kind
from controller.queue import ShutDown, WorkQueue

log = structlog.get_logger("gates")
GATED_SELECTOR = f"{LABEL_GATED}=true"
EVENT_REASON = "ModelNotReady"
RECHECK_SECONDS = 300.0
"""A waiting pod is looked at again this often even without a model event (a safety net)."""
PROGRESS_STEP = 25
_PROGRESS = re.compile(r" \((\d{1,3})%\)")


@dataclass(frozen=True)
class Lift:
    digests: list[Digest]


@dataclass(frozen=True)
class Wait:
    message: str
    update_annotation: bool
    emit_event: bool


Decision = Lift | Wait | None


def _gated(pod: JSON) -> bool:
    gates = (pod.get("spec") or {}).get("schedulingGates") or []
    return any(g.get("name") == SCHEDULING_GATE for g in gates)


def _bucket(message: str) -> int:
    match = _PROGRESS.search(message)
    return int(match.group(1)) // PROGRESS_STEP if match else -1


def decide(pod: JSON, lookup: ModelLookup, announced: str | None) -> Decision:
    """What to do with one labelled pod; ``None``: nothing (not gated by us any more).
    ``announced``: the cause of the last Event emitted for this pod (``None``: none yet)."""
    if not _gated(pod):
        return None
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    try:
        refs = parse_references(annotations, meta.get("namespace") or "")
    except ConsumptionRefused as refused:  # the annotation was edited on the gated pod
        message = f"{refused.reason}: {refused}"
    else:
        state = readiness(refs, lookup)
        if not isinstance(state, Waiting):
            return Lift(state)
        message = state.message
    previous = annotations.get(ANNOTATION_WAITING, "")
    changed = waiting_cause(message) != waiting_cause(previous)
    moved = _bucket(message) != _bucket(previous)
    return Wait(message, changed or moved, waiting_cause(message) != announced)


def lift_patch(pod: JSON, digests: list[Digest]) -> JSON:
    """The merge patch that records the digests and removes the gate, atomically."""
    meta = pod["metadata"]
    gates = [
        g
        for g in (pod.get("spec") or {}).get("schedulingGates") or []
        if g.get("name") != SCHEDULING_GATE
    ]
    return {
        "metadata": {
            "resourceVersion": meta["resourceVersion"],
            "annotations": {
                ANNOTATION_DIGESTS: digests_annotation(digests),
                ANNOTATION_WAITING: None,
            },
            "labels": {LABEL_GATED: None},
        },
        "spec": {"schedulingGates": gates or None},
    }


def act(kube: KubeClient, events: EventRecorder, pod: JSON, decision: Decision) -> None:
    meta = pod["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    if isinstance(decision, Lift):
        kube.merge_patch(PODS, name, lift_patch(pod, decision.digests), namespace)
        log.info("gate lifted", pod=f"{namespace}/{name}")
    elif isinstance(decision, Wait):
        if decision.update_annotation:
            patch = {"metadata": {"annotations": {ANNOTATION_WAITING: decision.message}}}
            kube.merge_patch(PODS, name, patch, namespace)
        if decision.emit_event:
            events.emit(
                {"apiVersion": "v1", "kind": "Pod", **pod},
                "Warning",
                EVENT_REASON,
                decision.message,
            )


class GateController:
    def __init__(
        self,
        kube: KubeClient,
        lookup: ModelLookup,
        events: EventRecorder,
        stop: threading.Event,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
    ) -> None:
        self._kube = kube
        self._lookup = lookup
        self._events = events
        self.stop = stop
        self.queue: WorkQueue[str] = WorkQueue(retry_base_seconds, retry_max_seconds)
        self._lock = threading.Lock()
        self._by_model: dict[ModelRef, set[str]] = defaultdict(set)
        self._refs_of: dict[str, set[ModelRef]] = {}
        self._announced: dict[str, str] = {}
        """pod key → the waiting cause of the last Event emitted for it."""
        self.pods = Informer(kube, PODS, self._on_pod, label_selector=GATED_SELECTOR, stop=stop)

    # ---- event handlers: keys only ------------------------------------------------------------

    def _on_pod(self, event: str, pod: JSON) -> None:
        key = object_key(pod)
        meta = pod.get("metadata") or {}
        try:
            refs = set(parse_references(meta.get("annotations"), meta.get("namespace") or ""))
        except ConsumptionRefused:
            refs = set()
        with self._lock:
            if event == "DELETED":
                self._announced.pop(key, None)
            for ref in self._refs_of.pop(key, set()):
                self._by_model[ref].discard(key)
                if not self._by_model[ref]:
                    del self._by_model[ref]
            if event != "DELETED":
                self._refs_of[key] = refs
                for ref in refs:
                    self._by_model[ref].add(key)
        if event != "DELETED":
            self.queue.add(key)

    def on_model(self, kind: Kind, obj: JSON) -> None:
        """A Model or ClusterModel changed: queue the gated pods that name it."""
        meta = obj.get("metadata") or {}
        namespace = (meta.get("namespace") or "") if kind == "Model" else ""
        ref = ModelRef(kind, namespace, meta.get("name", ""))
        with self._lock:
            keys = list(self._by_model.get(ref, ()))
        for key in keys:
            self.queue.add(key)

    def pods_waiting_for(self, ref: ModelRef) -> set[str]:
        with self._lock:
            return set(self._by_model.get(ref, ()))

    # ---- reconcile ----------------------------------------------------------------------------

    def reconcile(self, key: str) -> float | None:
        """Observe (the cache) → decide → act; the delay before looking again, if any."""
        pod = self.pods.get(key)
        if pod is None:
            return None
        with self._lock:
            announced = self._announced.get(key)
        decision = decide(pod, self._lookup, announced)
        act(self._kube, self._events, pod, decision)
        with self._lock:
            if isinstance(decision, Wait) and decision.emit_event:
                self._announced[key] = waiting_cause(decision.message)
            elif not isinstance(decision, Wait):
                self._announced.pop(key, None)
        return RECHECK_SECONDS if isinstance(decision, Wait) else None

    def _process(self, key: str) -> None:
        try:
            after = self.reconcile(key)
            self.queue.forget(key)
            if after:
                self.queue.add_after(key, after)
        except Conflict:
            self.queue.add_after(key, 0.2)  # the pod changed: decide again on the new one
        except Exception as error:  # noqa: BLE001 - back off this key, keep the worker
            delay = self.queue.retry(key)
            log.warning("gate reconcile failed", pod=key, error=str(error), retry_in=delay)
        finally:
            self.queue.done(key)

    def _work(self) -> None:
        while True:
            try:
                key = self.queue.get()
            except ShutDown:
                return
            if key is not None:
                self._process(key)

    def start_workers(self, count: int) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._work, name=f"gates-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in threads:
            thread.start()
        return threads


def informer_lookup(models: Informer, cluster_models: Informer) -> ModelLookup:
    """The webhook's and the gate controller's view of the models: the manager's caches."""

    def lookup(kind: Kind, namespace: str, name: str) -> Any:
        if kind == "Model":
            return models.get(f"{namespace}/{name}")
        return cluster_models.get(f"/{name}")

    return lookup
