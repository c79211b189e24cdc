"""Starting a preparation: ``reconcile`` → ``Dispatcher.admit`` → ``create_job`` against the
in-memory API server of ``fakekube``.

Admission arithmetic and the queued status; at most ``maxConcurrent`` Jobs also when workers
start objects at once, with the API writes outside the admission lock; a Job that exists
already is adopted (409), not duplicated; the Job is rendered before anything is written, so
a Job that cannot be rendered or created leaves no token Secret behind and says why in status;
a Failed object is retried only for a new ``ai.deckhouse.io/retry`` value."""

from __future__ import annotations

import base64
import copy
import hashlib
import threading
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller import naming
from controller.config import Config
from controller.dispatch import ADOPTION_WINDOW_SECONDS, needs_slot, queue_place
from controller.errors import ApiUnavailable, Forbidden, JobRenderFailed, KubeError
from controller.jobs import JobRequest
from controller.kube import JOBS, MODELS, SECRETS
from controller.naming import ObjectKey
from controller.reconciler import QUEUED_RECHECK_SECONDS
from tests.unit.controller.rig import JOB, SYSTEM, TOKEN, UID, URL, Rig, model

JSON = dict[str, object]
SECRET = f"{JOB}-source-token"
WAIT = 10.0  # seconds a test thread waits for another before the test fails
RETRY = naming.RETRY_ANNOTATION
BLOCKED = {"type": "Ready", "status": "False", "reason": "AuthSecretNotFound"}


def started(url: str = URL) -> Rig:
    rig = Rig()
    rig.add(model(url))
    rig.secret()
    return rig


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


@pytest.mark.parametrize("char", ["\u0080", "\u0085", "\ufffe", "\u2028", "\t"])
def test_awkward_url_starts_a_job_with_the_exact_url_and_its_token(char: str) -> None:
    url = f"{URL}{char}"
    rig = started(url)
    with capture_logs() as logs:
        assert rig.reconcile() is None
    assert rig.calls() == [
        "get secrets team-a/hf-token",
        f"create secrets {SYSTEM}/{SECRET}",
        f"create jobs {SYSTEM}/{JOB}",
        f"patch secrets {SYSTEM}/{SECRET}",
        "replace models/status team-a/private-model",
    ]
    job = rig.kube.stored(JOBS, JOB, SYSTEM)
    assert job is not None
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["prepare", url]
    secret = rig.kube.stored(SECRETS, SECRET, SYSTEM)
    assert secret is not None
    assert secret["data"] == {"token": TOKEN}
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["name"], owner["uid"]) == (JOB, job["metadata"]["uid"])
    assert rig.obj()["status"]["phase"] == "Publishing"
    assert rig.ready()["message"] == f"the preparation Job is starting (Job {SYSTEM}/{JOB})"
    assert rig.events() == [
        ("Normal", "PreparationStarted", f"preparing {url} in Job {SYSTEM}/{JOB}")
    ]
    assert [(e["event"], e["key"]) for e in logs] == [
        ("preparation Job created", "Model/team-a/private-model")
    ]
    assert rig.dispatcher.running() == 1


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
    assert rig.dispatcher.running() == 2


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


def test_an_existing_job_is_adopted_not_duplicated() -> None:
    """A restarted controller whose Job informer has not shown the Job yet: the create answers
    409, the existing Job is used and the token Secret is given to it."""
    rig = started()
    existing = rig.kube.seed(JOBS, {"metadata": {"name": JOB, "uid": "job-uid-before"}}, SYSTEM)
    rig.caches.jobs.hidden.add(JOB)
    with capture_logs() as logs:
        assert rig.reconcile() is None
    assert rig.calls(JOBS) == [f"create jobs {SYSTEM}/{JOB}", f"get jobs {SYSTEM}/{JOB}"]
    assert rig.kube.objects(JOBS) == [existing]
    secret = rig.kube.stored(SECRETS, SECRET, SYSTEM)
    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "job-uid-before"
    assert [(e["event"], e["job"]) for e in logs] == [
        ("preparation Job adopted", f"{SYSTEM}/{JOB}")
    ]
    assert rig.obj()["status"]["phase"] == "Publishing"


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


def test_a_failed_object_is_retried_only_for_a_new_retry_value() -> None:
    rig = Rig()
    rig.add(model(auth_secret=None))
    rig.kube.set_status(MODELS, "private-model", "team-a", {"phase": "Failed"})
    assert rig.reconcile() is None
    assert rig.kube.calls == []  # the empty retry value was attempted: nothing to do

    retried = copy.deepcopy(rig.obj())
    retried["metadata"]["annotations"] = {naming.RETRY_ANNOTATION: "1"}
    rig.kube.seed(MODELS, retried)
    assert rig.reconcile() is None
    job = f"{JOB}-{hashlib.sha256(b'1').hexdigest()[:8]}"
    # The attempt is recorded on the object before its Job exists.
    assert rig.calls() == [
        "patch models team-a/private-model",
        f"create jobs {SYSTEM}/{job}",
        "replace models/status team-a/private-model",
    ]
    patch = rig.kube.calls_of("patch", MODELS)[0].body
    assert patch is not None
    assert patch["metadata"]["annotations"] == {naming.ANNOTATION_RETRY_OF: "1"}
    assert rig.obj()["metadata"]["annotations"][naming.ANNOTATION_RETRY_OF] == "1"
    assert rig.names(JOBS) == [job]

    rig.kube.set_status(MODELS, "private-model", "team-a", {"phase": "Failed"})
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []  # this value was attempted too: nothing until the next one


def test_a_job_that_cannot_be_rendered_fails_the_attempt_and_leaves_no_secret() -> None:
    def broken(request: JobRequest, config: Config) -> dict[str, object]:
        raise JobRenderFailed("preparation-job.yaml.j2: ReaderError: unacceptable character")

    rig = Rig(build=broken)
    rig.add(model())
    rig.secret()
    with capture_logs() as logs:
        assert rig.reconcile() is None
    assert rig.kube.objects(SECRETS, SYSTEM) == []
    assert rig.kube.objects(JOBS) == []
    assert rig.obj()["status"]["phase"] == "Failed"
    assert rig.ready()["reason"] == "JobRenderFailed"
    assert rig.ready()["message"] == (
        "the preparation Job could not be created: preparation-job.yaml.j2: ReaderError: "
        "unacceptable character; set a new ai.deckhouse.io/retry annotation value to try again"
    )
    # The empty retry value is recorded as no annotation: no empty `retry-value:` on objects.
    assert naming.ANNOTATION_RETRY_OF not in rig.obj()["metadata"].get("annotations", {})
    assert [(t, r) for t, r, _ in rig.events()] == [("Warning", "PreparationFailed")]
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("preparation Job not rendered", "error")
    ]
    assert rig.dispatcher.running() == 0  # the slot's reservation ended with the attempt
    # Terminal for this retry value: reconciling again creates nothing and writes nothing.
    before = rig.obj()
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []
    assert rig.obj() == before


def test_a_job_the_api_server_refuses_fails_the_attempt_and_leaves_no_secret() -> None:
    rig = started()
    invalid = KubeError(422, "Invalid", 'Job.batch "x" is invalid: spec: Invalid')
    rig.kube.fail("create", JOBS, invalid)
    assert rig.reconcile() is None
    assert rig.kube.objects(SECRETS, SYSTEM) == []
    assert rig.ready()["reason"] == "JobRenderFailed"
    assert rig.ready()["message"] == (
        "the preparation Job could not be created: the API server rejected the Job: "
        '422 Invalid: Job.batch "x" is invalid: spec: Invalid; '
        "set a new ai.deckhouse.io/retry annotation value to try again"
    )
    assert rig.dispatcher.running() == 0


def test_a_transient_job_create_failure_keeps_the_secret_for_the_retry() -> None:
    rig = started()
    rig.kube.fail("create", JOBS, ApiUnavailable(0, "ConnectionError", "timed out"))
    with pytest.raises(ApiUnavailable):
        rig.reconcile()
    assert rig.names(SECRETS) == [SECRET]
    assert rig.dispatcher.running() == 0  # the slot is free again for the retry
    assert rig.reconcile() is None
    secret = rig.kube.stored(SECRETS, SECRET, SYSTEM)
    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["name"] == JOB
    assert rig.names(JOBS) == [JOB]


def test_a_forbidden_job_create_is_raised_and_frees_the_slot() -> None:
    """RBAC refusing the Job is a packaging bug: raised for the runner to log loudly, never
    turned into a status or a quiet requeue; the token Secret goes, the slot is free."""
    rig = started()
    rig.kube.forbid("create", JOBS)
    with pytest.raises(Forbidden):
        rig.reconcile()
    assert rig.kube.objects(SECRETS, SYSTEM) == []
    assert rig.dispatcher.running() == 0
    assert "status" not in rig.obj()


def test_a_secret_the_controller_may_not_read_blocks_with_a_reason() -> None:
    rig = started()
    rig.kube.forbid("get", SECRETS)
    # Rechecked soon, then less often (a jitter of ±20 %, here its middle): no Secret watch.
    with capture_logs() as logs:
        assert [rig.reconcile() for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert rig.kube.objects(JOBS) == []
    assert rig.kube.objects(SECRETS, SYSTEM) == []
    assert rig.obj()["status"]["phase"] == "Pending"
    assert rig.ready()["reason"] == "AuthSecretForbidden"
    message = (
        "the controller may not read Secret team-a/hf-token named by spec.source.authSecretRef; "
        "namespace team-a is not in the chart's controller.authSecretNamespaces"
    )
    assert rig.ready()["message"] == message
    # One Event and one log line for the cause, not one per recheck; the slot is not held.
    assert rig.events() == [("Warning", "AuthSecretForbidden", message)]
    assert [(e["event"], e["reason"]) for e in logs] == [
        ("preparation blocked", "AuthSecretForbidden")
    ]
    assert rig.dispatcher.running() == 0


def test_a_missing_secret_then_created_starts_the_job() -> None:
    rig = Rig()
    rig.add(model())
    assert rig.reconcile() == 2.0
    assert rig.ready()["reason"] == "AuthSecretNotFound"
    rig.secret()
    assert rig.reconcile() is None
    assert rig.names(JOBS) == [JOB]
    assert rig.obj()["status"]["phase"] == "Publishing"
    assert rig.obj()["metadata"]["uid"] == UID


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


def test_an_invalid_token_blocks_with_a_reason() -> None:
    rig = Rig()
    rig.add(model())
    rig.secret(token="not base64!")
    assert rig.reconcile() == 2.0
    assert (rig.ready()["reason"], rig.ready()["message"]) == (
        "AuthSecretInvalid",
        "Secret team-a/hf-token has no non-empty key `token`",
    )
    rig.secret(token=base64.b64encode(b"  \n").decode())
    assert rig.reconcile() == 4.0
    assert rig.ready()["reason"] == "AuthSecretInvalid"
    assert rig.kube.objects(JOBS) == []


def test_the_informer_seeing_a_job_ends_its_just_created_window() -> None:
    rig = started()
    assert rig.reconcile() is None
    assert rig.dispatcher.just_created(JOB)
    rig.caches.jobs.hidden.add(JOB)
    assert rig.dispatcher.running() == 1  # created, not yet in the cache: still counted
    rig.dispatcher.invalidate(job_seen=JOB)
    assert not rig.dispatcher.just_created(JOB)
    assert rig.dispatcher.running() == 0
