"""The slot queue (``worker.maxConcurrent``): which objects wait for a preparation slot and in
what order, how many slots are taken, and the admission that reserves one.

Admission is serialised (``admit``): the decision and the reservation of the slot happen under
one lock, and the reservation counts as a running preparation until ``release`` (the Job
exists, or the start failed), so two workers never both take the last slot while the API
writes of a start run outside the lock.

A queued object decided on what it saw; it looks again when that may have changed, that is when
a slot or a place ahead of it frees (docs/controller.md, "Slots and concurrent workers"):

- a Job finishes or goes: the manager's Job handler wakes every waiting object;
- a reservation ends without a Job (``release``): ``on_freed`` wakes the next in line;
- an object leaves the queue without a slot (blocked, failed, deleted): ``observe``, called by
  the manager's Model handler once the cache shows the change, says so, and the next in line
  wake (``next_in_line``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller import naming
from controller.caches import Caches, Store
from controller.config import Config
from controller.naming import Kind, ObjectKey
from controller.status import ready_condition

JSON = dict[str, Any]
ADOPTION_WINDOW_SECONDS = 30.0
Order = tuple[str, Kind, str, str]
"""(creationTimestamp, kind, namespace, name): older first."""

# Objects that wait for the user (a missing Secret) hold no place in the slot queue: they would
# block everyone behind them. They are rechecked on their own and queue again once unblocked.
USER_BLOCKED_REASONS = frozenset(
    {"AuthSecretNotFound", "AuthSecretInvalid", "AuthSecretForbidden",
     # A catalog import that does not resolve (yet) or got no grant: rechecked on its own.
     "CatalogSourceNotReady", "CatalogSourceAmbiguous", "CatalogEntryNotFound",
     "CatalogVersionAmbiguous", "CatalogUnauthorized", "CatalogUnreachable", "CatalogTLSError",
     "CatalogMalformed", "CatalogDigestMismatch", "CredentialsSecretNotFound",
     "CredentialsSecretInvalid", "CASecretInvalid", "InvalidCatalogURL"}
)  # fmt: skip
# Blocked on the auth Secret: checked again before the admission (``Reconciler._start``).
AUTH_SECRET_REASONS = frozenset({"AuthSecretNotFound", "AuthSecretInvalid", "AuthSecretForbidden"})


def is_finished(job: JSON) -> bool:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return True
    return False


def retry_value(obj: JSON) -> str:
    """The object's ``ai.deckhouse.io/retry`` annotation (empty without one)."""
    return str((obj["metadata"].get("annotations") or {}).get(naming.RETRY_ANNOTATION, ""))


def needs_slot(obj: JSON) -> bool:
    """Whether the object waits for (or holds) a preparation slot. An upload waits for one
    only once its bytes are committed and it was queued (until then it waits for the user)."""
    meta, st = obj["metadata"], obj.get("status") or {}
    source = (obj.get("spec") or {}).get("source") or {}
    if meta.get("deletionTimestamp"):
        return False
    if "upload" in source:
        return st.get("phase") == "Pending" and ready_condition(obj).get("reason") == "Queued"
    if "url" not in source and "catalog" not in source:
        return False
    if st.get("phase") == "Pending" and ready_condition(obj).get("reason") in USER_BLOCKED_REASONS:
        return False
    attempted = (meta.get("annotations") or {}).get(naming.ANNOTATION_RETRY_OF, "")
    return st.get("phase") != "Ready" and not (
        st.get("phase") == "Failed" and attempted == retry_value(obj)
    )


def queue_place(position: int, running: int, limit: int) -> int:
    """0 when the ``position``-th oldest waiting object may start with ``running`` of ``limit``
    slots taken; else its place in the queue, from 1."""
    free = limit - running
    return 0 if position <= free else max(position - free, 1)


def _order(kind: Kind, obj: JSON) -> Order:
    meta = obj["metadata"]
    return (meta.get("creationTimestamp", ""), kind, meta.get("namespace") or "", meta["name"])


def _job_of(obj: JSON) -> str:
    return naming.job_name(obj["metadata"].get("uid", ""), retry_value(obj))


@dataclass(frozen=True)
class Queued:
    """Not admitted: what the queued status shows."""

    position: int
    running: int
    limit: int


class Slots:
    def __init__(
        self,
        caches: Caches,
        config: Config,
        monotonic: Callable[[], float] = time.monotonic,
        on_freed: Callable[[ObjectKey], None] = lambda key: None,
    ) -> None:
        self._caches = caches
        self._config = config
        self._monotonic = monotonic
        self._on_freed = on_freed
        """Called (outside the locks) with the object whose reservation ended without a Job."""
        self._admission = threading.Lock()
        """Held while one admission is decided and its slot reserved; never across API calls."""
        self._lock = threading.Lock()
        """Guards the fields below; held only for a moment."""
        self._reserved: set[str] = set()
        """Jobs admitted whose creation is in progress."""
        self._created: dict[str, float] = {}
        """Jobs created but perhaps not yet in the cache, so the slot count never undercounts."""
        self._needing: set[ObjectKey] = set()
        """The objects whose cached version needs a slot (``observe``)."""
        self._version = 0
        self._order: tuple[int, dict[Order, int]] | None = None

    def running(self) -> int:
        """Preparations holding a slot: unfinished Jobs, and Jobs being or just created."""
        now = self._monotonic()
        with self._lock:
            # The Job cache is read under the lock: a Job its informer adds meanwhile is in this
            # read or still in ``_created`` (the informer's ``invalidate`` waits for the lock),
            # never in neither — which would undercount and admit one too many.
            jobs = {j["metadata"]["name"]: j for j in self._caches.jobs.items()}
            for name, at in list(self._created.items()):
                if name in jobs or now - at > ADOPTION_WINDOW_SECONDS:
                    del self._created[name]
            pending = (set(self._created) | self._reserved) - jobs.keys()
        return len(pending) + sum(1 for j in jobs.values() if not is_finished(j))

    def invalidate(self, job_seen: str | None = None) -> None:
        """Called by the Job event handler: the queue may differ. A Job the informer has seen
        no longer needs counting as just created."""
        with self._lock:
            self._version += 1
            if job_seen is not None:
                self._created.pop(job_seen, None)

    def observe(self, key: ObjectKey, event: str, obj: JSON) -> bool:
        """Called by the Model and ClusterModel event handler once the cache shows ``obj``:
        whether the object left the queue without taking a slot (blocked, failed, deleted), so
        that an object queued behind it may start now."""
        needing = event != "DELETED" and needs_slot(obj)
        job = _job_of(obj)
        with self._lock:
            self._version += 1
            was = key in self._needing
            if needing:
                self._needing.add(key)
            else:
                self._needing.discard(key)
            holds = job in self._created or job in self._reserved
        if not was or needing or holds:
            return False
        return self._caches.job(self._config.system_namespace, job) is None

    def _waiting(self) -> dict[Order, int]:
        """Objects without a Job, oldest first → their 1-based place; recomputed only after a
        change (a burst of 1,000 reconciles must not sort 1,000 objects each)."""
        with self._lock:
            if self._order is not None and self._order[0] == self._version:
                return self._order[1]
            version, created = self._version, set(self._created) | self._reserved
        system = self._config.system_namespace
        kinds: tuple[tuple[Store, Kind], ...] = (
            (self._caches.models, "Model"),
            (self._caches.cluster_models, "ClusterModel"),
        )
        waiting = []
        for cache, kind in kinds:
            for other in cache.items():
                job = _job_of(other)
                has_job = job in created or self._caches.job(system, job) is not None
                if needs_slot(other) and not has_job:
                    waiting.append(_order(kind, other))
        places = {entry: i + 1 for i, entry in enumerate(sorted(waiting))}
        with self._lock:
            self._order = (version, places)
        return places

    def queue_position(self, key: ObjectKey, obj: JSON) -> tuple[int, int]:
        """``(position, running)``: the 1-based place of ``obj`` among the objects waiting for
        a slot, oldest first, and the number of preparations running."""
        places = self._waiting()
        mine = _order(key.kind, obj)
        position = places.get(mine)
        if position is None:  # not in the snapshot yet: behind everyone older
            position = 1 + sum(1 for entry in places if entry < mine)
        return position, self.running()

    def next_in_line(self, exclude: ObjectKey | None = None) -> list[ObjectKey]:
        """The oldest waiting objects, as many as there are slots (but ``exclude``): the ones a
        freed slot or place may admit."""
        keys = (ObjectKey(kind, ns, name) for _, kind, ns, name in self._waiting())
        return [k for k in keys if k != exclude][: self._config.worker.max_concurrent]

    def admit(self, key: ObjectKey, obj: JSON, retry: str) -> Queued | None:
        """``None`` when ``obj`` may start its Job now: a slot is then reserved for it until
        ``release`` (which must follow). Otherwise its place in the queue. Only the decision
        is serialised, so two workers never both take the last slot."""
        name = naming.job_name(obj["metadata"]["uid"], retry)
        limit = self._config.worker.max_concurrent
        with self._admission:
            position, running = self.queue_position(key, obj)
            place = queue_place(position, running, limit)
            if place:
                return Queued(place, running, limit)
            with self._lock:
                self._reserved.add(name)
                self._version += 1
        return None

    def release(self, key: ObjectKey, job: str, created: bool) -> None:
        """Ends the reservation of ``admit``: the Job counts as created, or the slot is free
        again — and since no Job event will say so, the next in line are told (``on_freed``)."""
        with self._lock:
            self._reserved.discard(job)
            if created:
                self._created[job] = self._monotonic()
            self._version += 1
        if not created:
            self._on_freed(key)

    def just_created(self, name: str) -> bool:
        """Whether the Job ``name`` was created moments ago and the informer has not shown it
        yet: a reconcile in that window must not start it again."""
        with self._lock:
            at = self._created.get(name)
        return at is not None and self._monotonic() - at <= ADOPTION_WINDOW_SECONDS
