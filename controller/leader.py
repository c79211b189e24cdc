"""Leader election on a ``coordination.k8s.io/v1`` Lease in the system namespace.

Only the leader reconciles; a standby keeps its caches warm and takes over when the leader's
lease expires (it stopped renewing: crashed, partitioned, or shut down — a graceful shutdown
releases the lease so the standby takes over at once). The lease's resourceVersion makes each
acquire/renew a compare-and-swap, so two candidates can never both win.

The leader stops (``lost``; the process exits and its reconcilers with it) when it reads the
lease held by another live holder, or when it has not renewed for ``renewDeadlineSeconds`` (API
errors, conflicts); the deadline is shorter than the lease's duration, so it stops before a
standby may take over. A 403 on the lease is logged as an error naming the missing permission.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import structlog

from controller.config import LeaderElectionConfig
from controller.errors import Conflict, Forbidden, KubeError, NotFound
from controller.kube import JSON, LEASES, KubeApi

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
        kube: KubeApi,
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
        self.holder: str | None = None
        """The holder of a live lease as last read (``identity`` after a win)."""

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
                self.holder = self.identity
                return True
            spec = lease.get("spec", {})
            holder = spec.get("holderIdentity")
            renewed = _parse(spec.get("renewTime"))
            duration = dt.timedelta(seconds=spec.get("leaseDurationSeconds") or 0)
            if holder and holder != self.identity and renewed and now < renewed + duration:
                self.holder = holder
                return False  # someone else holds a live lease
            mine = holder == self.identity
            transitions = spec.get("leaseTransitions", 0) + (0 if mine else 1)
            lease["spec"] = self._spec(now, spec.get("acquireTime") if mine else None, transitions)
            self._kube.replace(LEASES, name, lease, self._namespace)
            self.holder = self.identity
            return True
        except (Conflict, NotFound):
            return False  # another candidate won this round

    def release(self) -> None:
        if not self.is_leader.is_set():
            return
        name = self._settings.lease_name
        try:
            lease = self._kube.get(LEASES, name, self._namespace)
            if lease and lease.get("spec", {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["leaseDurationSeconds"] = 1
                self._kube.replace(LEASES, name, lease, self._namespace)
        except KubeError as error:  # the standby takes over when the lease expires instead
            log.warning("lease not released", error=str(error))

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Forbidden as error:  # a packaging bug: say which rule the chart forgot
            missing = {"missing": str(error.permission)} if error.permission else {}
            log.error("lease request forbidden", error=str(error), **missing)
        except KubeError as error:
            log.warning("lease request failed", error=str(error))
        return False

    def run(self, stop: threading.Event) -> None:
        """Campaigns until leader, then renews; sets ``lost`` when another holder has the lease
        or renewal fails past the renew deadline (the process must stop reconciling: it exits)."""
        last_renew: dt.datetime | None = None
        deadline = dt.timedelta(seconds=self._settings.renew_deadline_seconds)
        while not stop.is_set():
            won = self._attempt()
            now = self._clock()
            if won:
                last_renew = now
                if not self.is_leader.is_set():
                    log.info("became leader", identity=self.identity)
                    self.is_leader.set()
            elif self.is_leader.is_set():
                taken = self.holder not in (None, self.identity)
                if taken or last_renew is None or now - last_renew > deadline:
                    log.error("lost leadership", identity=self.identity, holder=self.holder)
                    self.is_leader.clear()
                    self.lost.set()
                    return
            stop.wait(self._settings.retry_period_seconds)
