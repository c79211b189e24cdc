"""Leader election against the in-memory API server, on a fake clock: each round of the
elector's loop is one retry period of fake time, so a 10-second renew deadline takes no real
time. A candidate acquires a free or expired Lease and waits out a live one; a leader renews,
stops at once when another holder has the Lease, rides out API errors shorter than the renew
deadline and stops past it; a 403 names the missing permission; release hands the Lease on."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import structlog

from controller.cli import configure_logging
from controller.config import LeaderElectionConfig
from controller.errors import ApiUnavailable, Conflict, Forbidden
from controller.kube import LEASES
from controller.leader import LeaderElector
from tests.unit.controller.fakekube import FakeClock, FakeKube

JSON = dict[str, object]
SYSTEM = "d8-ai-models"
LEASE = "ai-models-controller"
ME, OTHER = "controller-a", "controller-b"
SETTINGS = LeaderElectionConfig(
    lease_duration_seconds=15, renew_deadline_seconds=10, retry_period_seconds=2
)
DENIED = (
    'leases.coordination.k8s.io "ai-models-controller" is forbidden: User '
    '"system:serviceaccount:d8-ai-models:ai-models-controller" cannot update resource "leases" '
    'in API group "coordination.k8s.io" in the namespace "d8-ai-models"'
)


class Rounds(threading.Event):
    """The elector's ``stop``: each wait is one retry period of fake time, then ``on_round``
    (the rest of the world acting) runs; set after ``limit`` rounds."""

    def __init__(self, clock: FakeClock, limit: int) -> None:
        super().__init__()
        self.clock, self.limit, self.count = clock, limit, 0
        self.on_round: Callable[[int], None] = lambda count: None

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout == SETTINGS.retry_period_seconds
        self.clock.advance(timeout)
        self.count += 1
        self.on_round(self.count)
        if self.count >= self.limit:
            self.set()
        return self.is_set()


class Ground:
    def __init__(self, limit: int = 10) -> None:
        self.kube = FakeKube()
        self.elector = LeaderElector(self.kube, SYSTEM, ME, SETTINGS, clock=self.kube.clock.now)
        self.rounds = Rounds(self.kube.clock, limit)

    def run(self) -> None:
        started = time.monotonic()
        self.elector.run(self.rounds)
        assert time.monotonic() - started < 2.0  # fake time only

    def spec(self) -> JSON:
        lease = self.kube.stored(LEASES, LEASE, SYSTEM)
        assert lease is not None
        spec: JSON = lease["spec"]
        return spec

    def hold(self, holder: str, renewed_seconds_ago: float = 0.0) -> None:
        """Another replica holds the Lease, last renewed ``renewed_seconds_ago``."""
        now = self.kube.clock.now().timestamp() - renewed_seconds_ago
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now))
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 3,
        }
        current = self.kube.stored(LEASES, LEASE, SYSTEM)
        if current is None:
            self.kube.seed(LEASES, {"metadata": {"name": LEASE}, "spec": spec}, SYSTEM)
        else:
            current["spec"] = spec
            self.kube.replace(LEASES, LEASE, current, SYSTEM)


class Logs:
    def __init__(self) -> None:
        self.buffer = io.StringIO()
        configure_logging("json", "debug", self.buffer)

    def lines(self) -> list[tuple[object, object]]:
        parsed = [json.loads(x) for x in self.buffer.getvalue().splitlines()]
        return [(x["level"], x["event"]) for x in parsed]

    def line(self, event: str) -> JSON:
        parsed: list[JSON] = [json.loads(x) for x in self.buffer.getvalue().splitlines()]
        return next(x for x in parsed if x["event"] == event)


@pytest.fixture
def logs() -> Iterator[Logs]:
    yield Logs()
    structlog.reset_defaults()


def test_a_candidate_creates_the_missing_lease_and_leads() -> None:
    ground = Ground(limit=1)
    ground.run()
    assert ground.elector.is_leader.is_set()
    assert not ground.elector.lost.is_set()
    assert ground.spec() == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-01-02T03:04:05.000000Z",
        "renewTime": "2026-01-02T03:04:05.000000Z",
        "leaseTransitions": 0,
    }


def test_the_leader_renews_every_retry_period_and_keeps_its_acquire_time() -> None:
    ground = Ground(limit=3)
    ground.run()
    assert ground.elector.is_leader.is_set()
    assert [c.verb for c in ground.kube.calls_of(resource=LEASES)] == [
        "get",
        "create",
        "get",
        "replace",
        "get",
        "replace",
    ]
    spec = ground.spec()
    assert (spec["acquireTime"], spec["renewTime"]) == (
        "2026-01-02T03:04:05.000000Z",
        "2026-01-02T03:04:09.000000Z",
    )
    assert spec["leaseTransitions"] == 0


def test_a_candidate_waits_out_a_live_lease_then_takes_it_over() -> None:
    ground = Ground(limit=20)
    ground.hold(OTHER, renewed_seconds_ago=5)  # expires 10 s from now
    became: list[int] = []
    ground.rounds.on_round = lambda count: (
        became.append(count) if ground.elector.is_leader.is_set() and not became else None
    )
    ground.run()
    assert became == [6]  # the round after 10 s: the lease expired at the 5th wait's end
    spec = ground.spec()
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == (ME, 4)
    assert spec["acquireTime"] == "2026-01-02T03:04:15.000000Z"
    assert not ground.elector.lost.is_set()


def test_a_released_lease_is_taken_at_once() -> None:
    ground = Ground(limit=1)
    ground.hold(OTHER)
    lease = ground.kube.stored(LEASES, LEASE, SYSTEM)
    assert lease is not None
    lease["spec"]["holderIdentity"] = None
    ground.kube.replace(LEASES, LEASE, lease, SYSTEM)
    ground.run()
    assert ground.elector.is_leader.is_set()
    assert ground.spec()["holderIdentity"] == ME


def test_a_lease_taken_by_another_holder_stops_the_leader_at_once(logs: Logs) -> None:
    ground = Ground(limit=10)
    ground.rounds.on_round = lambda count: ground.hold(OTHER) if count == 2 else None
    ground.run()
    assert ground.rounds.count == 2  # returned in the round it read the other holder
    assert ground.elector.lost.is_set()
    assert not ground.elector.is_leader.is_set()
    assert ground.elector.holder == OTHER
    lost = logs.line("lost leadership")
    assert (lost["level"], lost["identity"], lost["holder"]) == ("error", ME, OTHER)


def test_api_errors_shorter_than_the_renew_deadline_keep_the_leader(logs: Logs) -> None:
    ground = Ground(limit=8)
    unavailable = ApiUnavailable(503, "ServiceUnavailable", "etcdserver: request timed out")
    # rounds 2-5 (t = 2, 4, 6, 8 s) fail: 8 s without renewal, under the 10 s deadline
    ground.rounds.on_round = lambda count: (
        ground.kube.fail("get", LEASES, unavailable, times=4) if count == 1 else None
    )
    ground.run()
    assert ground.elector.is_leader.is_set()
    assert not ground.elector.lost.is_set()
    assert logs.lines().count(("warning", "lease request failed")) == 4
    assert ground.spec()["renewTime"] == "2026-01-02T03:04:19.000000Z"


def test_failing_renewals_past_the_renew_deadline_stop_the_leader(logs: Logs) -> None:
    ground = Ground(limit=20)
    stale = Conflict(409, "Conflict", "the object has been modified")
    ground.rounds.on_round = lambda count: (
        ground.kube.fail("replace", LEASES, stale, times=None) if count == 1 else None
    )
    ground.run()
    # renewed at t = 0; conflicts at 2 … 10 s are within the deadline, 12 s is past it
    assert ground.rounds.count == 6
    assert ground.elector.lost.is_set()
    assert not ground.elector.is_leader.is_set()
    assert ("error", "lost leadership") in logs.lines()


def test_a_forbidden_lease_names_the_missing_permission(logs: Logs) -> None:
    ground = Ground(limit=2)
    ground.kube.fail("create", LEASES, Forbidden(403, "Forbidden", DENIED), times=None)
    ground.run()
    assert not ground.elector.is_leader.is_set()
    line = logs.line("lease request forbidden")
    assert line["level"] == "error"
    assert line["missing"] == (
        "update leases (API group coordination.k8s.io) in namespace d8-ai-models"
    )


def test_a_candidate_losing_the_race_to_create_stays_a_candidate() -> None:
    ground = Ground(limit=1)
    ground.kube.fail("create", LEASES, Conflict(409, "AlreadyExists", "exists"))
    ground.run()
    assert not ground.elector.is_leader.is_set()
    assert not ground.elector.lost.is_set()


def test_release_hands_the_lease_on() -> None:
    ground = Ground(limit=1)
    ground.run()
    ground.elector.release()
    spec = ground.spec()
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == (None, 1)
    other = LeaderElector(ground.kube, SYSTEM, OTHER, SETTINGS, clock=ground.kube.clock.now)
    assert other.try_acquire_or_renew()
    assert ground.spec()["holderIdentity"] == OTHER


def test_release_leaves_a_lease_it_does_not_hold() -> None:
    ground = Ground(limit=1)
    ground.run()
    ground.hold(OTHER)
    ground.elector.release()
    assert ground.spec()["holderIdentity"] == OTHER
    candidate = Ground()
    candidate.elector.release()  # never led: no request at all
    assert candidate.kube.calls == []


def test_a_failed_release_is_a_warning_not_a_crash(logs: Logs) -> None:
    ground = Ground(limit=1)
    ground.run()
    ground.kube.fail("get", LEASES, ApiUnavailable(0, "ConnectionError", "refused"))
    ground.elector.release()
    assert ("warning", "lease not released") in logs.lines()
    assert ground.spec()["holderIdentity"] == ME
