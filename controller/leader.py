"""Leader election on a ``coordination.k8s.io/v1`` Lease in the system namespace.

Only the leader reconciles; a standby keeps its caches warm and takes over when the leader's
lease expires (it stopped renewing: crashed, partitioned, or shut down — a graceful shutdown
releases the lease so the standby takes over at once). The lease's resourceVersion makes each
acquire/renew a compare-and-swap, so two candidates can never both win.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import structlog

from controller.config import LeaderElectionConfig
from controller.errors import Conflict, KubeError, NotFound
from controller.kube import JSON, LEASES, KubeClient

log = structlog.get_logger("leader")


def _micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        identity: str,
        settings: LeaderElectionConfig,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._kube = kube
        self._namespace = namespace
        self.identity = identity
        self._settings = settings
        self._clock = clock
        self.is_leader = threading.Event()
        self.lost = threading.Event()

    def _spec(self, now: dt.datetime, acquired: str | None, transitions: int) -> JSON:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self._settings.lease_duration_seconds),
            "acquireTime": acquired or _micro(now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        now = self._clock()
        name = self._settings.lease_name
        lease = self._kube.get(LEASES, name, self._namespace)
        try:
            if lease is None:
                body = {"metadata": {"name": name}, "spec": self._spec(now, None, 0)}
                self._kube.create(LEASES, body, self._namespace)
                return True
            spec = lease.get("spec", {})
            holder = spec.get("holderIdentity")
            renewed = _parse(spec.get("renewTime"))
            duration = dt.timedelta(seconds=spec.get("leaseDurationSeconds") or 0)
            if holder and holder != self.identity and renewed and now < renewed + duration:
                return False  # someone else holds a live lease
            mine = holder == self.identity
            transitions = spec.get("leaseTransitions", 0) + (0 if mine else 1)
            lease["spec"] = self._spec(now, spec.get("acquireTime") if mine else None, transitions)
            self._kube.replace(LEASES, name, lease, self._namespace)
            return True
        except (Conflict, NotFound):
            return False  # another candidate won this round

    def release(self) -> None:
        if not self.is_leader.is_set():
            return
        lease = self._kube.get(LEASES, self._settings.lease_name, self._namespace)
        if lease and lease.get("spec", {}).get("holderIdentity") == self.identity:
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["leaseDurationSeconds"] = 1
            try:
                self._kube.replace(LEASES, self._settings.lease_name, lease, self._namespace)
            except KubeError as error:
                log.warning("lease not released", error=str(error))

    def run(self, stop: threading.Event) -> None:
        """Campaigns until leader, then renews; sets ``lost`` when renewal fails past the
        renew deadline (the process must stop reconciling: it exits)."""
        last_renew: dt.datetime | None = None
        while not stop.is_set():
            try:
                won = self.try_acquire_or_renew()
            except KubeError as error:
                log.warning("lease request failed", error=str(error))
                won = False
            now = self._clock()
            if won:
                last_renew = now
                if not self.is_leader.is_set():
                    log.info("became leader", identity=self.identity)
                    self.is_leader.set()
            elif self.is_leader.is_set():
                deadline = dt.timedelta(seconds=self._settings.renew_deadline_seconds)
                if last_renew is None or now - last_renew > deadline:
                    log.error("lost leadership", identity=self.identity)
                    self.is_leader.clear()
                    self.lost.set()
                    return
            stop.wait(self._settings.retry_period_seconds)
