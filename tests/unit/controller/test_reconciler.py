"""``reconcile`` over one preparation against the in-memory API server of ``fakekube``: the Job's
and pods' states are set by the test as the Job controller and the worker would set them, and
every call is recorded. The status moves only forward within an attempt, counts attempts one
way, names the Job, and is written only when it changes; an object deleted or changed between
the read and the write, and a request RBAC refuses, are raised for the runner (done, again
soon, logged loudly) with nothing half-written; each decision logs one line with its key."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller import naming
from controller.errors import Conflict, Forbidden, NotFound
from controller.kube import JOBS, MODELS, SECRETS
from tests.unit.controller.fakekube import Call
from tests.unit.controller.rig import JOB, KEY, SYSTEM, URL, Rig, model, progress

JSON = dict[str, Any]
WHERE = f"Job {SYSTEM}/{JOB}"
KEY_FIELD = "Model/team-a/private-model"
DIGEST = "sha256:" + "d" * 64
RESULT = {
    "artifact": {
        "kind": "OCI",
        "digest": DIGEST,
        "mediaType": "application/vnd.cncf.model.manifest.v1+json",
        "sizeBytes": 3 << 20,
    },
    "resolved": {"architecture": "BertModel", "format": "Safetensors", "parameterCount": 7},
    "source": {"resolvedType": "HuggingFace"},
}


def running(auth_secret: str | None = None) -> Rig:
    """An object whose Job was just created."""
    rig = Rig()
    rig.add(model(auth_secret=auth_secret))
    assert rig.reconcile() is None
    rig.kube.calls.clear()
    return rig


def status_messages(rig: Rig) -> list[str]:
    """The Ready message of every status write to the Model, in order."""
    messages = []
    for call in rig.kube.calls_of("replace", MODELS):
        assert call.sub == "status"
        assert call.body is not None
        ready = next(c for c in call.body["status"]["conditions"] if c["type"] == "Ready")
        messages.append(ready["message"])
    return messages


def failure(reason: str, message: str, *log: str) -> str:
    return json.dumps({"reason": reason, "message": message, "log": list(log)})


def decisions(logs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["key"]) for e in logs if e["log_level"] == "info"]


def test_one_preparation_moves_only_forward_with_one_write_per_change() -> None:
    rig = Rig()
    rig.add(model(auth_secret=None))
    with capture_logs() as logs:
        assert rig.reconcile() is None
        # The informer has not shown the Job yet: no second start, no second Event.
        rig.caches.jobs.hidden.add(JOB)
        assert rig.reconcile() is None
        rig.caches.jobs.hidden.clear()
        assert rig.reconcile() is None  # nothing changed: nothing written
        rig.pod(1, "Pending")
        assert rig.reconcile() is None
        rig.pod(1, "Running", annotations=progress(33, 1 << 20))
        rig.reconcile()
        rig.reconcile()
        rig.pod(1, "Running", annotations=progress(99, 3 << 20, "manifest"))
        rig.reconcile()
        # The pod succeeded; the Job's Complete condition comes a moment later.
        done = {**progress(100, 3 << 20, "manifest"), naming.ANNOTATION_RESULT: json.dumps(RESULT)}
        rig.pod(1, "Succeeded", exit_code=0, annotations=done)
        rig.reconcile()
        rig.job_status(conditions=[{"type": "Complete", "status": "True"}], succeeded=1)
        rig.reconcile()
        rig.reconcile()
    assert status_messages(rig) == [
        f"the preparation Job is starting ({WHERE})",
        f"transfer model.safetensors: 1.0 MiB of 3.0 MiB (33%) ({WHERE})",
        f"manifest: 3.0 MiB of 3.0 MiB (99%) ({WHERE})",
        f"published {DIGEST} (3.0 MiB)",
    ]
    assert rig.calls(JOBS) == [f"create jobs {SYSTEM}/{JOB}"]
    assert rig.obj()["status"]["phase"] == "Ready"
    assert naming.ANNOTATION_RETRY_OF not in rig.obj()["metadata"]["annotations"]
    assert rig.events() == [
        ("Normal", "PreparationStarted", f"preparing {URL} in {WHERE}"),
        ("Normal", "Published", f"published {DIGEST}"),
    ]
    assert rig.published == [3 << 20]
    assert decisions(logs) == [
        ("preparation Job created", KEY_FIELD),
        ("model published", KEY_FIELD),
    ]
    # Ready is final: nothing more is read from the API server or written.
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []


def test_retries_count_one_way_and_show_the_last_log_lines() -> None:
    rig = running()
    job = rig.kube.stored(JOBS, JOB, SYSTEM)
    assert job is not None
    job["spec"]["backoffLimit"] = 2
    rig.kube.seed(JOBS, job, SYSTEM)
    lines = ("t1 info  inspected files=3", "t2 warn  GET model.safetensors: 503, retrying in 1s")
    with capture_logs() as logs:
        for attempt in (1, 2, 3):
            rig.pod(attempt, "Running", annotations=progress(10 * attempt, 1 << 20))
            rig.reconcile()
            why = failure("SourceUnavailable", f"503 #{attempt}", *lines)
            rig.pod(attempt, "Failed", exit_code=1, message=why)
            rig.job_status(failed=attempt - 1)
            rig.reconcile()
        rig.job_status(
            failed=3,
            conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        )
        rig.reconcile()
        rig.reconcile()
    note = "SourceUnavailable: 503 #"
    assert status_messages(rig) == [
        f"transfer model.safetensors: 1.0 MiB of 3.0 MiB (10%) ({WHERE})",
        f"retrying in 10s (attempt 2 of 3): {note}1 ({WHERE})",
        f"retrying (attempt 2 of 3): {note}1; transfer model.safetensors: 1.0 MiB of 3.0 MiB "
        f"(20%) ({WHERE})",
        f"retrying in 20s (attempt 3 of 3): {note}2 ({WHERE})",
        f"retrying (attempt 3 of 3): {note}2; transfer model.safetensors: 1.0 MiB of 3.0 MiB "
        f"(30%) ({WHERE})",
        f"gave up after 3 attempts; last error: {note}3",
    ]
    log = f"\nlast worker log lines of {WHERE}:\n" + "\n".join(lines)
    assert rig.events()[1:] == [
        ("Warning", "Retrying", f"retrying in 10s (attempt 2 of 3): {note}1{log}"),
        ("Warning", "Retrying", f"retrying in 20s (attempt 3 of 3): {note}2{log}"),
        (
            "Warning",
            "PreparationFailed",
            f"PreparationFailed: gave up after 3 attempts; last error: {note}3{log}",
        ),
    ]
    assert decisions(logs) == [("preparation failed", KEY_FIELD)]
    assert [e["reason"] for e in logs] == ["PreparationFailed"]
    # Failed is final for this retry value.
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []


def test_a_deleted_object_is_done_without_a_call() -> None:
    rig = Rig()
    assert rig.reconcile() is None
    assert rig.kube.calls == []


def test_the_finalizer_comes_first_guarded_by_the_resource_version() -> None:
    rig = Rig()
    rig.add(model(auth_secret=None, finalizer=False))
    version = rig.obj()["metadata"]["resourceVersion"]
    assert rig.reconcile() is None
    assert rig.calls()[:2] == ["patch models team-a/private-model", f"create jobs {SYSTEM}/{JOB}"]
    patch = rig.kube.calls_of("patch", MODELS)[0].body
    assert patch == {"metadata": {"finalizers": [naming.FINALIZER], "resourceVersion": version}}
    assert rig.obj()["metadata"]["finalizers"] == [naming.FINALIZER]


def test_an_object_deleted_before_its_first_write_is_done_with_nothing_created() -> None:
    """Deleted (no finalizer yet) between the cache read and the finalizer patch: NotFound,
    which the runner counts as done; no Job, no Secret, no status."""
    rig = Rig()
    rig.add(model(finalizer=False))
    rig.secret()
    gone = lambda call: rig.kube.drop(MODELS, "private-model", "team-a")  # noqa: E731
    rig.kube.before("patch", MODELS, gone, once=True)
    with pytest.raises(NotFound):
        rig.reconcile()
    assert rig.calls() == ["patch models team-a/private-model"]
    assert rig.kube.objects(JOBS) == []
    assert rig.kube.objects(SECRETS, SYSTEM) == []
    assert rig.reconcile() is None  # the next reconcile finds it gone: done
    assert rig.slots.running() == 0


def test_an_object_gone_before_a_status_write_raises_not_found() -> None:
    rig = running()
    rig.kube.before(
        "replace", MODELS, lambda call: rig.kube.drop(MODELS, "private-model", "team-a")
    )
    rig.pod(1, "Running", annotations=progress(33, 1 << 20))
    with pytest.raises(NotFound):
        rig.reconcile()
    assert rig.calls() == ["replace models/status team-a/private-model"]
    assert rig.events()[1:] == []


def test_an_object_changed_before_the_finalizer_patch_raises_conflict() -> None:
    """Another writer moved the object on after the cache read: the patch's resourceVersion is
    stale, nothing else is written, and the runner reconciles the newer version."""
    rig = Rig()
    rig.add(model(auth_secret=None, finalizer=False))

    def edit(call: Call) -> None:
        rig.kube.seed(MODELS, {**rig.obj(), "spec": {"source": {"url": URL + "-v2"}}})

    rig.kube.before("patch", MODELS, edit, once=True)
    with pytest.raises(Conflict):
        rig.reconcile()
    assert rig.calls() == ["patch models team-a/private-model"]
    assert rig.kube.objects(JOBS) == []


def test_a_conflict_on_the_first_status_write_leaves_it_to_the_newer_version() -> None:
    rig = Rig()
    rig.add(model(auth_secret=None))
    bump = lambda call: rig.kube.seed(MODELS, rig.obj())  # noqa: E731
    rig.kube.before("replace", MODELS, bump, once=True)
    assert rig.reconcile() is None
    assert rig.names(JOBS) == [JOB]
    assert "status" not in rig.obj()
    rig.kube.calls.clear()
    assert rig.reconcile() is None  # the newer version: its Job exists, the status follows
    assert rig.calls() == ["replace models/status team-a/private-model"]
    assert rig.ready()["message"] == f"the preparation Job is starting ({WHERE})"


def test_a_forbidden_status_write_is_raised_with_nothing_else_done() -> None:
    rig = running()
    rig.kube.forbid("replace", MODELS)
    rig.pod(1, "Running", annotations=progress(33, 1 << 20))
    with pytest.raises(Forbidden) as raised:
        rig.reconcile()
    assert raised.value.status == 403
    assert rig.calls() == ["replace models/status team-a/private-model"]
    assert rig.events()[1:] == []


def test_an_unsupported_source_is_blocked_without_a_job() -> None:
    rig = Rig()
    obj = model(auth_secret=None)
    obj["spec"]["source"] = {"catalog": {"name": "q"}}
    rig.add(obj)
    assert rig.reconcile() is None
    assert rig.kube.objects(JOBS) == []
    assert rig.obj()["status"]["phase"] == "Pending"
    assert rig.ready() | {"lastTransitionTime": ""} == {
        "type": "Ready",
        "status": "False",
        "reason": "SourceKindNotSupported",
        "message": "spec.source.catalog is not handled by this controller version yet; "
        "no preparation Job was created",
        "observedGeneration": 1,
        "lastTransitionTime": "",
    }
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []  # written once


def test_a_deleted_object_is_handed_to_the_finalizer() -> None:
    rig = running()
    rig.kube.delete(MODELS, "private-model", "team-a")
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.calls(MODELS)[-1] == "patch models team-a/private-model"
    assert rig.kube.stored(MODELS, "private-model", "team-a") is None
    assert rig.reconcile(KEY) is None
