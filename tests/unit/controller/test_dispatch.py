"""Starting a preparation once admitted: ``reconcile`` → ``Slots.admit`` → ``create_job``
against the in-memory API server of ``fakekube`` (the admission itself: ``test_slots.py``).

A Job that exists already is adopted (409), not duplicated; the Job is rendered before anything
is written, so a Job that cannot be rendered or created leaves no token Secret behind, frees its
slot and says why in status; a Failed object is retried only for a new
``ai.deckhouse.io/retry`` value."""

from __future__ import annotations

import base64
import copy
import hashlib

import pytest
from structlog.testing import capture_logs

from controller import naming
from controller.config import Config
from controller.errors import ApiUnavailable, Forbidden, JobRenderFailed, KubeError
from controller.jobs import JobRequest
from controller.kube import JOBS, MODELS, SECRETS
from tests.unit.controller.rig import JOB, KEY, SYSTEM, TOKEN, UID, URL, Rig, model

JSON = dict[str, object]
SECRET = f"{JOB}-source-token"
RETRY = naming.RETRY_ANNOTATION


def started(url: str = URL) -> Rig:
    rig = Rig()
    rig.add(model(url))
    rig.secret()
    return rig


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
    assert rig.slots.running() == 1
    assert rig.freed == []


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
    assert rig.slots.running() == 0  # the slot's reservation ended with the attempt
    assert rig.freed == [KEY]  # told to the next in line
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
    assert rig.slots.running() == 0
    assert rig.freed == [KEY]  # told to the next in line


def test_a_transient_job_create_failure_keeps_the_secret_for_the_retry() -> None:
    rig = started()
    rig.kube.fail("create", JOBS, ApiUnavailable(0, "ConnectionError", "timed out"))
    with pytest.raises(ApiUnavailable):
        rig.reconcile()
    assert rig.names(SECRETS) == [SECRET]
    assert rig.slots.running() == 0  # the slot is free again for the retry
    assert rig.freed == [KEY]  # told to the next in line
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
    assert rig.slots.running() == 0
    assert rig.freed == [KEY]  # told to the next in line
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
    assert rig.slots.running() == 0
    assert rig.freed == [KEY]  # told to the next in line


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
