"""The slot queue (``controller/slots.py``) on the fake API: which objects wait for a slot, in
what order and at what place; at most ``maxConcurrent`` preparations, also when workers admit at
once or the Job informer shows a Job while the slots are counted; and the look a queued object
gets whenever a slot or a place ahead of it frees — through the reconciler (``Rig``) and through
the manager's event handlers, its informers fed change by change as their watches would
(``Cluster``)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from api.catalog_protocol import Grant
from controller import naming
from controller.kube import JOBS, MODELS
from controller.naming import ObjectKey
from controller.reconciler import QUEUED_RECHECK_SECONDS
from controller.slots import ADOPTION_WINDOW_SECONDS, needs_slot, queue_place
from tests.unit.controller.cluster import Cluster
from tests.unit.controller.rig import JOB, SYSTEM, Rig, model
from tests.unit.controller.test_catalog_import import CatalogRig, catalog_model, entry

JSON = dict[str, Any]
WAIT = 10.0  # seconds a test thread waits for another before the test fails
RETRY = naming.RETRY_ANNOTATION
BLOCKED = {"type": "Ready", "status": "False", "reason": "AuthSecretNotFound"}
FAILED = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "-"}
ONE_SLOT = "worker.maxConcurrent=1"


def started() -> Rig:
    rig = Rig()
    rig.add(model())
    rig.secret()
    return rig


def at(minute: int) -> str:
    return f"2026-01-02T03:{minute:02d}:00Z"


def queued(position: int, running: int, limit: str = ONE_SLOT) -> str:
    return f"queued: position {position} for a preparation slot ({running} of 1 running; {limit})"


@pytest.mark.parametrize(
    ("position", "running", "limit", "place"),
    [
        (1, 0, 2, 0),  # a free slot: admitted
        (2, 0, 2, 0),
        (3, 0, 2, 1),  # first in the queue
        (1, 1, 2, 0),
        (2, 1, 2, 1),
        (1, 2, 2, 1),  # all slots taken: first in the queue
        (4, 2, 2, 4),
        (1, 3, 2, 2),  # over the limit (lowered): one more must finish first
        (5, 0, 8, 0),
    ],
)
def test_queue_place(position: int, running: int, limit: int, place: int) -> None:
    assert queue_place(position, running, limit) == place


def test_objects_beyond_the_limit_wait_in_order_with_their_place() -> None:
    rig = Rig(max_concurrent=2)
    keys = [
        rig.add(
            model(
                auth_secret=None, name=f"m{i}", uid=f"uid-m{i}", created=f"2026-01-02T03:0{i}:00Z"
            )
        )
        for i in range(4)
    ]
    # The youngest first: it must not jump the queue.
    assert [rig.reconcile(k) for k in reversed(keys)] == [
        QUEUED_RECHECK_SECONDS,
        QUEUED_RECHECK_SECONDS,
        None,
        None,
    ]
    assert rig.names(JOBS) == ["prepare-uid-m1", "prepare-uid-m0"]
    limit = "worker.maxConcurrent=2"
    assert [rig.ready(k)["message"] for k in keys[2:]] == [
        f"queued: position 1 for a preparation slot (0 of 2 running; {limit})",
        f"queued: position 2 for a preparation slot (0 of 2 running; {limit})",
    ]
    assert {rig.ready(k)["reason"] for k in keys[2:]} == {"Queued"}
    # Rechecked while both run: the place is the same, the running count now right.
    assert rig.reconcile(keys[3]) == QUEUED_RECHECK_SECONDS
    assert rig.ready(keys[3])["message"] == (
        f"queued: position 2 for a preparation slot (2 of 2 running; {limit})"
    )
    # A Job that finished frees its slot for the oldest waiting object only.
    rig.job_status("prepare-uid-m0", conditions=[{"type": "Complete", "status": "True"}])
    assert rig.reconcile(keys[3]) == QUEUED_RECHECK_SECONDS
    assert rig.reconcile(keys[2]) is None
    assert rig.names(JOBS) == ["prepare-uid-m1", "prepare-uid-m0", "prepare-uid-m2"]
    assert rig.ready(keys[3])["message"] == (
        f"queued: position 1 for a preparation slot (1 of 2 running; {limit})"
    )


def unauthenticated(rig: Rig, n: int) -> list[ObjectKey]:
    return [
        rig.add(
            model(
                auth_secret=None, name=f"m{i}", uid=f"uid-m{i}", created=f"2026-01-02T03:0{i}:00Z"
            )
        )
        for i in range(n)
    ]


def test_starts_beyond_the_limit_wait_while_admitted_ones_create_their_jobs() -> None:
    """Two workers are held inside the Job creation of the two admitted objects; two more
    workers decide and write their queued status meanwhile: the lock covers admission only."""
    rig = Rig(max_concurrent=2)
    keys = unauthenticated(rig, 4)
    creating, go = threading.Semaphore(0), threading.Event()

    def hold(call: object) -> None:
        creating.release()
        assert go.wait(WAIT)

    rig.kube.before("create", JOBS, hold)
    results: dict[ObjectKey, float | None] = {}

    def start(key: ObjectKey) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.update({key: rig.reconcile(key)}))
        thread.start()
        return thread

    admitted = [start(k) for k in keys[:2]]
    assert creating.acquire(timeout=WAIT)
    assert creating.acquire(timeout=WAIT)
    queued = [start(k) for k in keys[2:]]
    for thread in queued:
        thread.join(WAIT)
        assert not thread.is_alive()
    go.set()
    for thread in admitted:
        thread.join(WAIT)
    assert results == {
        keys[0]: None,
        keys[1]: None,
        keys[2]: QUEUED_RECHECK_SECONDS,
        keys[3]: QUEUED_RECHECK_SECONDS,
    }
    assert sorted(rig.names(JOBS)) == ["prepare-uid-m0", "prepare-uid-m1"]
    limit = "worker.maxConcurrent=2"
    assert [rig.ready(k)["message"] for k in keys[2:]] == [
        f"queued: position 1 for a preparation slot (2 of 2 running; {limit})",
        f"queued: position 2 for a preparation slot (2 of 2 running; {limit})",
    ]
    assert rig.slots.running() == 2


@pytest.mark.parametrize("workers", [3, 6])
def test_concurrent_starts_admit_exactly_the_limit(workers: int) -> None:
    rig = Rig(max_concurrent=2)
    keys = unauthenticated(rig, workers)
    barrier = threading.Barrier(workers)
    results: dict[ObjectKey, float | None] = {}

    def start(key: ObjectKey) -> None:
        barrier.wait(WAIT)
        results[key] = rig.reconcile(key)

    threads = [threading.Thread(target=start, args=(k,)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    # The two oldest, whatever order the workers ran in; the rest keep their places.
    assert sorted(rig.names(JOBS)) == ["prepare-uid-m0", "prepare-uid-m1"]
    assert results == {k: None if i < 2 else QUEUED_RECHECK_SECONDS for i, k in enumerate(keys)}
    places = [rig.ready(k)["message"].split(" for ")[0] for k in keys[2:]]
    assert places == [f"queued: position {i}" for i in range(1, workers - 1)]


def test_a_job_created_moments_ago_is_not_started_again_before_the_informer_shows_it() -> None:
    rig = started()
    assert rig.reconcile() is None
    rig.caches.jobs.hidden.add(JOB)
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []
    # Past the adoption window the informer must have missed it: start again, which adopts.
    rig.clock.advance(ADOPTION_WINDOW_SECONDS + 1)
    assert rig.reconcile() is None
    assert rig.calls(JOBS) == [f"create jobs {SYSTEM}/{JOB}", f"get jobs {SYSTEM}/{JOB}"]
    assert rig.names(JOBS) == [JOB]


def test_a_slot_being_taken_counts_as_running_until_its_job_exists() -> None:
    """An object that was blocked holds no place in the queue; once its Secret exists it is
    admitted, and while its Job is being created a younger object must not take a slot too."""
    rig = Rig(max_concurrent=1)
    rig.add(model())
    assert rig.reconcile() == 2.0  # AuthSecretNotFound: out of the queue
    rig.secret()
    younger = rig.add(
        model(auth_secret=None, name="younger", uid="uid-y", created="2026-01-02T04:00:00Z")
    )
    creating, go = threading.Event(), threading.Event()

    def hold(call: object) -> None:
        creating.set()
        assert go.wait(WAIT)

    rig.kube.before("create", JOBS, hold, once=True)
    older = threading.Thread(target=rig.reconcile)
    older.start()
    assert creating.wait(WAIT)
    assert rig.reconcile(younger) == QUEUED_RECHECK_SECONDS
    go.set()
    older.join(WAIT)
    assert rig.names(JOBS) == [JOB]
    assert rig.ready(younger)["message"] == (
        "queued: position 1 for a preparation slot (1 of 1 running; worker.maxConcurrent=1)"
    )


@pytest.mark.parametrize(
    ("change", "waits"),
    [
        ({}, True),
        ({"metadata": {"deletionTimestamp": "2026-01-02T03:04:05Z"}}, False),
        ({"spec": {"source": {"upload": {}}}}, False),
        ({"status": {"phase": "Pending", "conditions": [BLOCKED]}}, False),
        ({"status": {"phase": "Pending", "conditions": [{**BLOCKED, "reason": "Queued"}]}}, True),
        ({"status": {"phase": "Ready"}}, False),
        ({"status": {"phase": "Failed"}}, False),
        ({"status": {"phase": "Failed"}, "metadata": {"annotations": {RETRY: "2"}}}, True),
    ],
)
def test_which_objects_wait_for_a_slot(change: dict[str, Any], waits: bool) -> None:
    obj = model()
    for part, fields in change.items():
        obj[part] = {**obj.get(part, {}), **fields}
    assert needs_slot(obj) is waits


def test_the_informer_seeing_a_job_ends_its_just_created_window() -> None:
    rig = started()
    assert rig.reconcile() is None
    assert rig.slots.just_created(JOB)
    rig.caches.jobs.hidden.add(JOB)
    assert rig.slots.running() == 1  # created, not yet in the cache: still counted
    rig.slots.invalidate(job_seen=JOB)
    assert not rig.slots.just_created(JOB)
    assert rig.slots.running() == 0


# ---- the slot count while the Job informer moves --------------------------------------------


def test_a_job_the_informer_shows_while_the_slots_are_counted_still_counts() -> None:
    """The Job informer adds a just-created Job to its cache and then ends its "just created"
    entry; a count that read the cache just before must still find it in one of the two (it
    used to find it in neither, and a second object started beside it)."""
    rig = Rig(max_concurrent=1)
    first, second = unauthenticated(rig, 2)
    rig.caches.jobs.hidden.add("prepare-uid-m0")  # the informer has not shown it yet
    assert rig.reconcile(first) is None
    informers: list[threading.Thread] = []

    def informer_shows_the_job() -> None:  # its store first, then the handler
        rig.caches.jobs.hidden.clear()
        rig.slots.invalidate(job_seen="prepare-uid-m0")

    def right_after_the_read() -> None:
        rig.caches.jobs.on_read = None
        informers.append(threading.Thread(target=informer_shows_the_job))
        informers[0].start()
        informers[0].join(0.5)  # done unless the slot count holds its lock

    rig.caches.jobs.on_read = right_after_the_read
    assert rig.reconcile(second) == QUEUED_RECHECK_SECONDS
    informers[0].join(WAIT)
    assert rig.names(JOBS) == ["prepare-uid-m0"]
    assert rig.ready(second)["message"] == queued(1, 1)
    assert rig.slots.running() == 1


# ---- a look again when a slot or a place frees -----------------------------------------------


def test_an_object_blocked_on_its_secret_stays_blocked_while_the_slots_are_taken() -> None:
    """Its recheck reads the Secret before it asks for a slot: it does not turn Queued (and take
    the first place) while the Secret is still missing, nor warn again when it turns back."""
    rig = Rig(max_concurrent=1)
    blocked = rig.add(model(auth_secret="absent", name="private", uid="uid-p", created=at(0)))
    assert rig.reconcile(blocked) == 2.0
    running = rig.add(model(auth_secret=None, name="running", uid="uid-r", created=at(1)))
    assert rig.reconcile(running) is None
    rig.freed.clear()
    assert rig.reconcile(blocked) == 4.0  # the blocked backoff goes on
    assert rig.ready(blocked)["reason"] == "AuthSecretNotFound"
    assert [e[1] for e in rig.events()].count("AuthSecretNotFound") == 1
    assert rig.freed == []  # it took no slot to give back
    rig.secret("absent")
    assert rig.reconcile(blocked) == QUEUED_RECHECK_SECONDS  # unblocked: now it waits its turn
    assert rig.ready(blocked)["message"] == queued(1, 1)


def test_a_slot_given_back_without_a_job_wakes_the_next_in_line() -> None:
    """A catalog import whose grant is refused asks again with each recheck, and only with a
    slot: the slot comes back without a Job, so no Job event announces it. The object queued
    behind looked while the slot was reserved (its place and count unchanged: no write, no
    event); it is told at once and starts."""
    rig = CatalogRig(max_concurrent=1)
    rig.source("a", entry())
    rig.catalog.refuse = True
    importing = rig.add(catalog_model())  # the oldest
    assert rig.reconcile(importing) == 2.0
    assert rig.ready(importing)["reason"] == "CatalogUnauthorized"
    first = rig.add(model(auth_secret=None, name="first", uid="uid-f", created=at(30)))
    later = rig.add(model(auth_secret=None, name="later", uid="uid-l", created=at(40)))
    assert rig.reconcile(first) is None
    assert rig.reconcile(later) == QUEUED_RECHECK_SECONDS
    rig.job_status("prepare-uid-f", conditions=[FAILED])  # a slot frees; everyone looks
    refuse, looks = rig.catalog.grant, []

    def grant_as_the_next_looks(name: str, version: str, digest: str) -> Grant:
        looks.append(rig.reconcile(later))
        return refuse(name, version, digest)

    rig.freed.clear()
    rig.catalog.grant = grant_as_the_next_looks  # type: ignore[method-assign]
    assert rig.reconcile(importing) == 4.0
    assert looks == [QUEUED_RECHECK_SECONDS]
    assert rig.ready(later)["message"] == queued(1, 1)  # as before: nothing wakes it but this
    assert rig.freed == [importing]
    assert rig.slots.next_in_line(exclude=importing) == [later]
    assert rig.reconcile(later) is None
    assert sorted(rig.names(JOBS)) == ["prepare-uid-f", "prepare-uid-l"]


def test_a_blocked_object_looking_as_a_slot_frees_does_not_strand_the_next() -> None:
    """The e2e stall (four Models, worker.maxConcurrent=1, and an older Model of another test
    blocked on a missing Secret). A Job finishes and wakes every waiting object. The blocked one,
    being the oldest, took the free slot, and gave it back once its Secret GET answered 404;
    the next object looked during that GET, saw the slot taken and its place unchanged (so it
    wrote nothing, and no event came back), and waited for its recheck. Now the blocked object
    reads its Secret before it asks for a slot, and the next one starts."""
    cluster = Cluster(max_concurrent=1)
    blocked = cluster.add(
        model(auth_secret="absent", name="private", uid="uid-p", created=at(0), finalizer=False)
    )
    first = cluster.add(
        model(auth_secret=None, name="first", uid="uid-f", created=at(1), finalizer=False)
    )
    second = cluster.add(
        model(auth_secret=None, name="second", uid="uid-s", created=at(2), finalizer=False)
    )
    cluster.settle()
    assert cluster.ready(blocked)["reason"] == "AuthSecretNotFound"
    assert cluster.jobs() == ["prepare-uid-f"]
    assert cluster.ready(second)["message"] == queued(1, 1)

    def second_looks_meanwhile(call: object) -> None:
        assert cluster.step() == second

    cluster.kube.set_status(JOBS, "prepare-uid-f", SYSTEM, {"conditions": [FAILED]})
    cluster.deliver()  # the Job's verdict
    assert cluster.step() == first  # its owner: Failed
    cluster.kube.before("get", "secrets", second_looks_meanwhile, once=True)
    assert cluster.step() == blocked  # the Secret GET, and the next object's look within it
    cluster.settle()
    assert cluster.jobs() == ["prepare-uid-f", "prepare-uid-s"]
    assert cluster.ready(blocked)["reason"] == "AuthSecretNotFound"


PLACE = {"phase": "Pending", "conditions": [{**BLOCKED, "reason": "Queued", "message": "-"}]}


@pytest.mark.parametrize(
    ("leaves", "wakes"),
    [
        ("deleted", True),
        ("being deleted", True),
        ("blocked", True),
        ("started and Ready", False),  # its Job took the slot: that Job's end frees one
    ],
)
def test_an_object_that_leaves_the_queue_without_a_slot_wakes_the_next_in_line(
    leaves: str, wakes: bool
) -> None:
    cluster = Cluster(max_concurrent=1)
    running = cluster.add(
        model(auth_secret=None, name="running", uid="uid-r", created=at(0)), {"phase": "Publishing"}
    )
    labels = {naming.LABEL_APP: naming.WORKER_APP, naming.LABEL_OWNER_UID: "uid-r"}
    cluster.kube.seed(JOBS, {"metadata": {"name": "prepare-uid-r", "labels": labels}}, SYSTEM)
    ahead = cluster.add(model(auth_secret=None, name="ahead", uid="uid-a", created=at(1)), PLACE)
    behind = cluster.add(model(auth_secret=None, name="behind", uid="uid-b", created=at(2)), PLACE)
    cluster.deliver()
    assert sorted(cluster.keys()) == sorted([running, ahead, behind])
    if leaves == "deleted":
        cluster.kube.drop(MODELS, ahead.name, ahead.namespace)
    elif leaves == "being deleted":
        cluster.kube.delete(MODELS, ahead.name, ahead.namespace)
    elif leaves == "blocked":
        cluster.kube.set_status(
            MODELS, ahead.name, ahead.namespace, {"phase": "Pending", "conditions": [BLOCKED]}
        )
    else:
        labels = {**labels, naming.LABEL_OWNER_UID: "uid-a"}
        cluster.kube.seed(JOBS, {"metadata": {"name": "prepare-uid-a", "labels": labels}}, SYSTEM)
        cluster.deliver()
        assert cluster.keys() == [ahead]  # its Job's event
        cluster.kube.set_status(MODELS, ahead.name, ahead.namespace, {"phase": "Ready"})
    cluster.deliver()
    assert sorted(cluster.keys()) == sorted([ahead, behind] if wakes else [ahead])
