"""The runner of reconciles (``KeyWorker``) and the manager's wiring, on a fake clock.

Each reconcile outcome leads to one queue action and one metric result; a Forbidden waits the
longest backoff and names the missing permission; a crash logs its traceback in both log
formats; every line logged during a reconcile carries its key and reconcile ID, also when two
workers reconcile two keys at once."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from api import upload
from controller import naming
from controller.catalog_reconciler import SourceKey
from controller.cli import configure_logging
from controller.config import parse_config
from controller.errors import (
    ApiUnavailable,
    Conflict,
    Forbidden,
    KubeError,
    NotFound,
    RegistryError,
)
from controller.informer import Informer
from controller.kube import (
    CLUSTER_MODELS,
    JOBS,
    LEASES,
    MODEL_CATALOG_SOURCES,
    MODELS,
    PODS,
    SECRETS,
    Resource,
)
from controller.manager import KeyWorker, Manager
from controller.metrics import Metrics
from controller.naming import ObjectKey
from controller.queue import ShutDown, WorkQueue
from tests.unit.controller.fakekube import FakeKube

JSON = dict[str, Any]
KEY = ObjectKey("Model", "team-a", "llama")
OTHER = ObjectKey("ClusterModel", "", "shared")
BASE, CAP = 1.0, 300.0
DENIED = (
    'models.ai.deckhouse.io "llama" is forbidden: User '
    '"system:serviceaccount:d8-ai-models:ai-models-controller" cannot patch resource '
    '"models/status" in API group "ai.deckhouse.io" in the namespace "team-a"'
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Logs:
    """The controller's real logging configuration, writing into a buffer."""

    def __init__(self, fmt: str) -> None:
        self.buffer = io.StringIO()
        configure_logging(fmt, "debug", self.buffer)

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def lines(self) -> list[JSON]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def logs() -> Iterator[Logs]:
    yield Logs("json")
    structlog.reset_defaults()


@pytest.fixture
def console() -> Iterator[Logs]:
    yield Logs("console")
    structlog.reset_defaults()


Reconcile = Callable[[ObjectKey], float | None]


class Ground:
    def __init__(self, reconcile: Reconcile) -> None:
        self.clock = FakeClock()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(BASE, CAP, clock=self.clock)
        self.metrics = Metrics()
        self.worker = KeyWorker(self.queue, reconcile, self.metrics, self.clock)

    def process(self, key: ObjectKey = KEY) -> None:
        """Queues the key, takes it as a worker would and reconciles it once."""
        self.queue.add(key)
        assert self.queue.get(0) == key
        self.worker.process(key)

    def due_after(self, delay: float, key: ObjectKey = KEY) -> bool:
        """Whether the key is handed out again exactly ``delay`` seconds of fake time from now
        (not a millisecond sooner); it is then held as a worker holds it."""
        started = self.clock.now
        self.clock.now = started + delay - 0.001
        early = self.queue.get(0)
        self.clock.now = started + delay
        return early is None and self.queue.get(0) == key

    def never_again(self) -> bool:
        self.clock.now += 100 * CAP
        return self.queue.get(0) is None

    def result(self, kind: str, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "ai_models_reconcile_total", {"kind": kind, "result": result}
        )
        return value or 0.0


def raising(error: BaseException) -> Reconcile:
    def reconcile(key: ObjectKey) -> float | None:
        raise error

    return reconcile


def test_done_forgets_the_backoff_and_requeue_after_waits_its_delay(logs: Logs) -> None:
    ground = Ground(lambda key: 30.0)
    ground.queue.retry(KEY)
    ground.queue.retry(KEY)
    ground.clock.now += 2 * BASE
    ground.process()
    assert ground.queue.failures(KEY) == 0
    assert ground.due_after(30.0)
    assert ground.result("Model", "ok") == 1.0
    assert logs.lines() == []


def test_done_without_delay_queues_nothing() -> None:
    ground = Ground(lambda key: None)
    ground.process()
    assert len(ground.queue) == 0
    assert ground.never_again()


def test_not_found_is_done_the_key_forgotten_and_not_retried(logs: Logs) -> None:
    ground = Ground(raising(NotFound(404, "NotFound", 'models "llama" not found')))
    ground.queue.retry(KEY)
    ground.clock.now += BASE
    started = time.monotonic()
    ground.process()
    assert ground.queue.failures(KEY) == 0
    assert len(ground.queue) == 0
    assert ground.never_again()
    assert time.monotonic() - started < 1.0  # 3000 s of fake time, no real sleeping
    assert ground.result("Model", "notfound") == 1.0
    [line] = logs.lines()
    assert (line["level"], line["event"], line["key"]) == ("info", "object gone, done", str(KEY))
    assert line["error"] == '404 NotFound: models "llama" not found'


def test_forbidden_is_an_error_naming_the_missing_rbac_and_waits_the_longest_backoff(
    logs: Logs,
) -> None:
    ground = Ground(raising(Forbidden(403, "Forbidden", DENIED)))
    ground.process()
    [line] = logs.lines()
    assert line["level"] == "error"
    assert line["event"] == "forbidden: the controller's RBAC lacks a permission"
    assert line["missing"] == (
        "patch models/status (API group ai.deckhouse.io) in namespace team-a"
    )
    assert line["error"] == f"403 Forbidden: {DENIED}"
    assert (line["retry_in"], line["key"]) == (CAP, str(KEY))
    assert ground.result("Model", "forbidden") == 1.0
    assert ground.queue.failures(KEY) == 1
    assert ground.due_after(CAP)  # not a hot loop: the cap at once, not 1 s, 2 s, …


def test_a_forbidden_of_another_cause_keeps_the_api_servers_words(logs: Logs) -> None:
    message = "unable to create new content in namespace team-a because it is being terminated"
    ground = Ground(raising(Forbidden(403, "Forbidden", message)))
    ground.process()
    [line] = logs.lines()
    assert (line["level"], line["event"], line["error"]) == (
        "error",
        "forbidden",
        f"403 Forbidden: {message}",
    )
    assert "missing" not in line
    assert ground.due_after(CAP)


def test_conflict_requeues_at_once_without_a_log_line(logs: Logs) -> None:
    ground = Ground(raising(Conflict(409, "Conflict", "the object has been modified")))
    ground.process()
    assert ground.due_after(0.2)
    assert ground.queue.failures(KEY) == 0
    assert ground.result("Model", "conflict") == 1.0
    assert logs.lines() == []


@pytest.mark.parametrize(
    "error",
    [
        ApiUnavailable(503, "ServiceUnavailable", "etcd leader changed"),
        KubeError(422, "Invalid", "spec: Invalid value"),
        RegistryError("registry.example: connection refused"),
    ],
)
def test_other_controller_errors_back_off_per_key_with_a_warning(
    logs: Logs, error: Exception
) -> None:
    ground = Ground(raising(error))
    ground.process()
    for delay in (1.0, 2.0):
        assert ground.due_after(delay)
        ground.worker.process(KEY)
    assert ground.due_after(4.0)
    lines = logs.lines()
    assert [(x["level"], x["event"], x["retry_in"]) for x in lines] == [
        ("warning", "reconcile failed, retrying", 1.0),
        ("warning", "reconcile failed, retrying", 2.0),
        ("warning", "reconcile failed, retrying", 4.0),
    ]
    assert {x["error"] for x in lines} == {str(error)}
    assert not any("exception" in x for x in lines)
    assert ground.result("Model", "error") == 3.0


def crashing_reconcile(key: ObjectKey) -> float | None:
    return {"spec": {}}["status"]  # type: ignore[return-value]


def test_an_unexpected_exception_logs_its_traceback_in_json(logs: Logs) -> None:
    ground = Ground(crashing_reconcile)
    ground.process()
    [line] = logs.lines()
    assert (line["level"], line["event"], line["key"]) == (
        "error",
        "reconcile crashed, retrying",
        str(KEY),
    )
    trace = str(line["exception"])
    assert trace.startswith("Traceback (most recent call last):")
    assert "in crashing_reconcile" in trace
    assert trace.rstrip().endswith("KeyError: 'status'")
    assert ground.due_after(BASE)
    assert ground.result("Model", "error") == 1.0


def test_an_unexpected_exception_logs_its_traceback_for_people(console: Logs) -> None:
    ground = Ground(crashing_reconcile)
    ground.process()
    first, *trace = console.text.splitlines()
    assert "[error    ] reconcile crashed, retrying" in first
    assert f"key={KEY}" in first
    assert "Traceback (most recent call last):" in trace
    assert trace[-1] == "KeyError: 'status'"
    assert not any("locals" in line.lower() for line in trace)  # a plain traceback, no locals


def test_every_line_of_a_reconcile_carries_its_key_and_id_and_nothing_outlives_it(
    logs: Logs,
) -> None:
    inner = structlog.get_logger("reconciler")

    def reconcile(key: ObjectKey) -> float | None:
        inner.info("decided", action="none")
        inner.info("acted")
        return None

    ground = Ground(reconcile)
    ground.process()
    ground.process(OTHER)
    structlog.get_logger("manager").info("after")
    first, second, third, fourth, after = logs.lines()
    assert [x["key"] for x in (first, second, third, fourth)] == [str(KEY)] * 2 + [str(OTHER)] * 2
    assert first["reconcile_id"] == second["reconcile_id"]
    assert third["reconcile_id"] == fourth["reconcile_id"]
    assert first["reconcile_id"] != third["reconcile_id"]
    assert len(str(first["reconcile_id"])) == 8
    assert "key" not in after
    assert "reconcile_id" not in after


def test_two_keys_reconciled_at_once_keep_their_own_context(logs: Logs) -> None:
    inner = structlog.get_logger("reconciler")
    both_inside = threading.Barrier(2, timeout=10)

    def reconcile(key: ObjectKey) -> float | None:
        inner.info("observed", name=key.name)
        both_inside.wait()  # the other worker has bound its own key by now
        inner.info("acted", name=key.name)
        return None

    ground = Ground(reconcile)
    ground.queue.add(KEY)
    ground.queue.add(OTHER)
    threads = [threading.Thread(target=ground.worker.run) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while ground.result("Model", "ok") + ground.result("ClusterModel", "ok") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ground.queue.shutdown()
    for thread in threads:
        thread.join(10)
    lines = logs.lines()
    assert len(lines) == 4
    by_name: dict[object, list[JSON]] = {}
    for line in lines:
        by_name.setdefault(line["name"], []).append(line)
    assert {n: [x["key"] for x in xs] for n, xs in by_name.items()} == {
        "llama": [str(KEY)] * 2,
        "shared": [str(OTHER)] * 2,
    }
    ids = {n: {x["reconcile_id"] for x in xs} for n, xs in by_name.items()}
    assert all(len(i) == 1 for i in ids.values())
    assert ids["llama"] != ids["shared"]


def test_a_crash_leaves_the_worker_running_and_the_key_released() -> None:
    outcomes: list[Exception | None] = [ZeroDivisionError("bug"), None]
    seen: list[ObjectKey] = []

    def reconcile(key: ObjectKey) -> float | None:
        seen.append(key)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return None

    ground = Ground(reconcile)
    ground.queue.add(KEY)
    thread = threading.Thread(target=ground.worker.run)
    thread.start()
    deadline = time.monotonic() + 10
    while ground.result("Model", "error") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ground.clock.now += BASE
    ground.queue.poke()
    while ground.result("Model", "ok") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    ground.queue.shutdown()
    thread.join(10)
    assert not thread.is_alive()
    assert seen == [KEY, KEY]


def test_duration_is_measured_on_the_clock() -> None:
    ground: Ground

    def reconcile(key: ObjectKey) -> float | None:
        ground.clock.now += 2.5
        return None

    ground = Ground(reconcile)
    ground.process()
    total = ground.metrics.registry.get_sample_value(
        "ai_models_reconcile_duration_seconds_sum", {"kind": "Model"}
    )
    assert total == 2.5


# ---- the manager: events → keys, leadership → workers ------------------------------------------

SYSTEM = "d8-ai-models"
WORKER_LABELS = {naming.LABEL_APP: naming.WORKER_APP}


class WatchingKube(FakeKube):
    """Watches replay the changes, then either end and stop the informers (``one_pass``: one
    ``Informer.run`` is one list and one watch, run in the test's thread) or hang until the
    manager stops (a quiet API server)."""

    def __init__(self, one_pass: bool) -> None:
        super().__init__()
        self.one_pass = one_pass
        self.stop = threading.Event()

    def watch(
        self,
        res: Resource,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[tuple[str, JSON]]:
        events = list(super().watch(res, resource_version, namespace, label_selector))
        if self.one_pass:
            self.stop.set()
            return iter(events)
        return self._then_hang(events)

    def _then_hang(self, events: list[tuple[str, JSON]]) -> Iterator[tuple[str, JSON]]:
        yield from events
        self.stop.wait()


def manager_over(kube: WatchingKube, **settings: object) -> Manager:
    config = parse_config({"systemNamespace": SYSTEM, **settings})
    fake: Any = kube
    manager = Manager(config, fake, "controller-a", None, Metrics())
    kube.stop = manager.stop
    return manager


def sync(manager: Manager, *informers: Informer) -> None:
    for informer in informers:
        manager.stop.clear()
        informer.run()


def drain(queue: WorkQueue[ObjectKey]) -> list[ObjectKey]:
    keys = []
    while (key := queue.get(0)) is not None:
        keys.append(key)
        queue.done(key)
    return keys


def seed_model(kube: FakeKube, key: ObjectKey, uid: str, phase: str | None = None) -> None:
    obj: dict[str, Any] = {"metadata": {"name": key.name, "uid": uid}, "spec": {}}
    if phase:
        obj["status"] = {"phase": phase}
    resource = MODELS if key.kind == "Model" else CLUSTER_MODELS
    kube.seed(resource, obj, key.namespace or None)


def seed_job(kube: FakeKube, owner_uid: str) -> None:
    labels = {**WORKER_LABELS, naming.LABEL_OWNER_UID: owner_uid}
    job = {"metadata": {"name": f"prepare-{owner_uid}", "labels": labels}, "spec": {}}
    kube.seed(JOBS, {**job, "status": {"conditions": []}}, SYSTEM)


def test_model_events_queue_their_keys() -> None:
    kube = WatchingKube(one_pass=True)
    manager = manager_over(kube)
    seed_model(kube, KEY, "uid-llama")
    seed_model(kube, OTHER, "uid-shared")
    sync(manager, manager.caches.models, manager.caches.cluster_models)
    assert sorted(drain(manager.queue)) == [OTHER, KEY]


def test_job_and_pod_events_queue_their_owners_key() -> None:
    kube = WatchingKube(one_pass=True)
    manager = manager_over(kube)
    seed_model(kube, KEY, "uid-llama")
    sync(manager, manager.caches.models)
    drain(manager.queue)
    seed_job(kube, "uid-llama")
    seed_job(kube, "uid-unknown")  # not an object the controller knows: no key
    pod = {
        "metadata": {
            "name": "prepare-uid-llama-x",
            "labels": {**WORKER_LABELS, naming.LABEL_OWNER_UID: "uid-llama"},
        }
    }
    kube.seed(PODS, pod, SYSTEM)
    sync(manager, manager.caches.jobs)
    assert drain(manager.queue) == [KEY]
    sync(manager, manager.caches.pods)
    assert drain(manager.queue) == [KEY]
    # An upload session record: the gateway's progress or commit, mapped by its labels alone.
    record_labels = {upload.LABEL_UPLOAD_SESSION: "upload-uid-llama"}
    for uid, name in (("uid-llama", "upload-uid-llama-state"), ("uid-unknown", "upload-x-state")):
        labels = {**record_labels, naming.LABEL_OWNER_UID: uid}
        kube.seed(SECRETS, {"metadata": {"name": name, "labels": labels}}, SYSTEM)
    kube.seed(SECRETS, {"metadata": {"name": "unrelated", "labels": {}}}, SYSTEM)
    sync(manager, manager.caches.upload_records)
    assert drain(manager.queue) == [KEY]


def test_a_finished_job_wakes_the_objects_waiting_for_a_slot() -> None:
    kube = WatchingKube(one_pass=True)
    manager = manager_over(kube)
    waiting = [ObjectKey("Model", "team-a", "new"), ObjectKey("ClusterModel", "", "queued")]
    seed_model(kube, waiting[0], "uid-new")
    seed_model(kube, waiting[1], "uid-queued", "Pending")
    seed_model(kube, ObjectKey("Model", "team-a", "busy"), "uid-busy", "Publishing")
    seed_model(kube, ObjectKey("Model", "team-a", "done"), "uid-done", "Ready")
    sync(manager, manager.caches.models, manager.caches.cluster_models)
    drain(manager.queue)
    seed_job(kube, "uid-busy")
    sync(manager, manager.caches.jobs)
    assert drain(manager.queue) == [ObjectKey("Model", "team-a", "busy")]
    kube.set_status(
        JOBS, "prepare-uid-busy", SYSTEM, {"conditions": [{"type": "Complete", "status": "True"}]}
    )
    sync(manager, manager.caches.jobs)
    assert sorted(drain(manager.queue)) == sorted([ObjectKey("Model", "team-a", "busy"), *waiting])
    assert len(manager.queue) == 0  # one look each: nothing scheduled for later


def test_a_deleted_object_is_queued_once_more_and_its_jobs_map_to_nothing() -> None:
    kube = WatchingKube(one_pass=True)
    manager = manager_over(kube)
    seed_model(kube, KEY, "uid-llama")
    sync(manager, manager.caches.models)
    drain(manager.queue)
    kube.drop(MODELS, KEY.name, KEY.namespace)
    sync(manager, manager.caches.models)
    assert drain(manager.queue) == [KEY]
    seed_job(kube, "uid-llama")
    sync(manager, manager.caches.jobs)
    assert drain(manager.queue) == []


def test_ready_once_every_cache_synced_and_gauges_count_objects_by_phase() -> None:
    kube = WatchingKube(one_pass=True)
    manager = manager_over(kube)
    seed_model(kube, KEY, "uid-llama", "Ready")
    seed_model(kube, ObjectKey("Model", "team-a", "new"), "uid-new")
    seed_model(kube, OTHER, "uid-shared", "Publishing")
    assert not manager.ready()
    caches = manager.caches
    sync(manager, caches.models, caches.cluster_models, caches.jobs)
    assert not manager.ready()
    sync(manager, caches.pods)
    assert not manager.ready()
    sync(manager, caches.upload_records)
    assert not manager.ready()
    sync(manager, caches.catalog_sources)
    assert manager.ready()
    sample = manager.metrics.registry.get_sample_value
    assert sample("ai_models_objects", {"kind": "Model", "phase": "Ready"}) == 1.0
    assert sample("ai_models_objects", {"kind": "Model", "phase": "Pending"}) == 1.0
    assert sample("ai_models_objects", {"kind": "ClusterModel", "phase": "Publishing"}) == 1.0
    assert sample("ai_models_queue_depth") == 3.0


class Running:
    """``Manager.run`` in a thread over a quiet API server, its reconcile replaced by a
    recorder (the reconciler has tests of its own)."""

    def __init__(
        self, kube: WatchingKube, leader: JSON | None = None, webhook: bool = False
    ) -> None:
        election = leader or {
            "leaseDurationSeconds": 2,
            "renewDeadlineSeconds": 1,
            "retryPeriodSeconds": 0.02,
        }
        controller = {"workers": 2, "leaderElection": election}
        self.manager = manager_over(kube, controller=controller, webhook={"enabled": webhook})
        self.reconciled: list[ObjectKey] = []
        self.manager.worker = KeyWorker(self.manager.queue, self._reconcile, self.manager.metrics)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _reconcile(self, key: ObjectKey) -> float | None:
        self.reconciled.append(key)
        return None

    def _run(self) -> None:
        self.exit_code = self.manager.run()

    def stop(self) -> int | None:
        self.manager.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.exit_code


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def lease_holder(kube: FakeKube) -> object:
    lease = kube.stored(LEASES, "ai-models-controller", SYSTEM)
    return (lease or {}).get("spec", {}).get("holderIdentity")


def test_the_leader_reconciles_every_object_and_releases_the_lease_on_stop() -> None:
    kube = WatchingKube(one_pass=False)
    seed_model(kube, KEY, "uid-llama")
    seed_model(kube, OTHER, "uid-shared")
    running = Running(kube, webhook=True)
    wait_until(lambda: len(running.reconciled) == 2)
    assert sorted(running.reconciled) == [OTHER, KEY]
    assert lease_holder(kube) == "controller-a"
    assert running.stop() == 0
    assert lease_holder(kube) is None  # released: the standby takes over at once


def test_a_lease_taken_by_another_holder_stops_the_reconcilers_and_exits_1() -> None:
    kube = WatchingKube(one_pass=False)
    running = Running(kube)
    wait_until(lambda: lease_holder(kube) == "controller-a")
    wait_until(
        lambda: running.manager.elector is not None and running.manager.elector.is_leader.is_set()
    )
    lease = kube.stored(LEASES, "ai-models-controller", SYSTEM)
    assert lease is not None
    lease["spec"]["holderIdentity"] = "controller-b"
    lease["spec"]["leaseDurationSeconds"] = 3600
    kube.replace(LEASES, "ai-models-controller", lease, SYSTEM)
    running.thread.join(10)
    assert running.exit_code == 1
    running.manager.queue.add(KEY)
    with pytest.raises(ShutDown):
        running.manager.queue.get(0)  # the workers have stopped taking keys
    assert running.reconciled == []
    running.stop()


def test_a_standby_never_reconciles_and_stops_cleanly() -> None:
    kube = WatchingKube(one_pass=False)
    seed_model(kube, KEY, "uid-llama")
    spec = {
        "holderIdentity": "controller-b",
        "leaseDurationSeconds": 3600,
        # the manager's elector reads the real clock
        "renewTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    kube.seed(LEASES, {"metadata": {"name": "ai-models-controller"}, "spec": spec}, SYSTEM)
    running = Running(kube)
    wait_until(lambda: len(kube.calls_of("get", LEASES)) >= 2)
    assert running.stop() == 0
    assert running.reconciled == []
    assert lease_holder(kube) == "controller-b"


def test_a_stop_before_the_caches_sync_returns_at_once() -> None:
    kube = WatchingKube(one_pass=False)
    kube.fail("list", MODELS, ApiUnavailable(503, "ServiceUnavailable", "starting"), times=None)
    running = Running(kube, leader={"enabled": False})
    wait_until(lambda: kube.calls_of("list", MODELS))
    assert running.stop() == 0
    assert kube.calls_of(resource=LEASES) == []


def test_without_leader_election_the_workers_start_at_once() -> None:
    kube = WatchingKube(one_pass=False)
    seed_model(kube, KEY, "uid-llama")
    running = Running(kube, leader={"enabled": False})
    wait_until(lambda: running.reconciled == [KEY])
    assert running.stop() == 0
    assert kube.calls_of(resource=LEASES) == []


# ---- ModelCatalogSources: their keys in the same queue, routed to their reconciler ------------


def seed_catalog_model(kube: FakeKube, key: ObjectKey, catalog: dict[str, str]) -> None:
    obj = {"metadata": {"name": key.name, "uid": f"uid-{key.name}"}}
    obj["spec"] = {"source": {"catalog": catalog}}
    resource = MODELS if key.kind == "Model" else CLUSTER_MODELS
    kube.seed(resource, obj, key.namespace or None)


def test_source_events_queue_source_keys_routed_to_the_catalog_reconciler() -> None:
    kube = WatchingKube(one_pass=True)
    manager = manager_over(kube)
    source = {"metadata": {"name": "central"}, "spec": {"url": "http://x"}}
    kube.seed(MODEL_CATALOG_SOURCES, source)
    sync(manager, manager.caches.catalog_sources)
    assert drain(manager.queue) == [SourceKey("central")]
    routed: list[object] = []
    manager.catalog_reconciler.reconcile = routed.append  # type: ignore[method-assign]
    manager.reconcile(SourceKey("central"))
    assert routed == [SourceKey("central")]


def test_a_catalog_change_wakes_the_catalog_models_that_may_resolve_against_it() -> None:
    kube = WatchingKube(one_pass=True)
    manager = manager_over(kube)
    any_source = ObjectKey("Model", "team-a", "any")
    named = ObjectKey("ClusterModel", "", "named")
    seed_catalog_model(kube, any_source, {"name": "llama"})
    seed_catalog_model(kube, named, {"name": "llama", "sourceName": "central"})
    seed_catalog_model(
        kube, ObjectKey("Model", "team-a", "other"), {"name": "x", "sourceName": "b"}
    )
    seed_model(kube, KEY, "uid-llama")
    sync(manager, manager.caches.models, manager.caches.cluster_models)
    drain(manager.queue)
    manager.catalogs.put("central", "rev-1", (), dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    assert sorted(drain(manager.queue)) == [named, any_source]
