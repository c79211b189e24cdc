"""Reading a Job and its pods into an outcome, and a worker pod's reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.protocol import InvalidWorkerResult
from controller.outcome import Failed, Running, Settling, Succeeded, job_outcome
from controller.workerpod import parse_progress, parse_result, parse_termination

RESULT = {
    "artifact": {
        "kind": "OCI",
        "digest": "sha256:" + "b" * 64,
        "mediaType": "application/vnd.cncf.model.manifest.v1+json",
        "sizeBytes": 1234,
    },
    "resolved": {"architecture": "LlamaForCausalLM", "format": "GGUF", "parameterCount": 134515008},
    "source": {"resolvedType": "Ollama", "resolvedRevision": "sha256:" + "c" * 64},
}


def job(
    conditions: list[tuple[str, str]] = (), failed: int = 0, backoff: int = 3
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "metadata": {"name": "prepare-x"},
        "spec": {"backoffLimit": backoff, "activeDeadlineSeconds": 600},
        "status": {
            "failed": failed,
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": f"{t} {r}"}
                for t, r in conditions
            ],
        },
    }


def pod(
    name: str,
    phase: str,
    *,
    exit_code: int | None = None,
    message: str = "",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if exit_code is not None:
        status["containerStatuses"] = [
            {
                "name": "worker",
                "state": {
                    "terminated": {"exitCode": exit_code, "reason": "Error", "message": message}
                },
            }
        ]
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": f"2026-11-26T10:00:0{name[-1]}Z",
            "annotations": annotations or {},
        },
        "status": status,
    }


def termination(reason: str, message: str) -> str:
    return json.dumps({"reason": reason, "message": message})


def test_running_with_progress() -> None:
    annotations = {
        "ai.deckhouse.io/progress": "42",
        "ai.deckhouse.io/progress-detail": json.dumps(
            {
                "stage": "transfer",
                "bytesDone": 420,
                "bytesTotal": 1000,
                "bytesPerSecond": 100,
                "file": "model.safetensors",
            }
        ),
    }
    outcome = job_outcome(job(), [pod("p1", "Running", annotations=annotations)])
    assert isinstance(outcome, Running)
    assert (outcome.attempt, outcome.attempts, outcome.last_failure) == (1, 4, None)
    assert outcome.progress is not None
    assert (outcome.progress.percent, outcome.progress.bytes_done, outcome.progress.file) == (
        42,
        420,
        "model.safetensors",
    )


def test_retrying_reports_the_last_failure() -> None:
    pods = [
        pod(
            "p1",
            "Failed",
            exit_code=1,
            message=termination("RegistryUnavailable", "registry 503 after 6 attempts"),
        ),
        pod("p2", "Running"),
    ]
    outcome = job_outcome(job(failed=1), pods)
    assert isinstance(outcome, Running)
    assert (outcome.attempt, outcome.attempts) == (2, 4)
    assert outcome.last_failure is not None
    assert (outcome.last_failure.reason, outcome.last_failure.message) == (
        "RegistryUnavailable",
        "registry 503 after 6 attempts",
    )


def test_complete_job_yields_the_validated_result() -> None:
    done = pod(
        "p1", "Succeeded", exit_code=0, annotations={"ai.deckhouse.io/result": json.dumps(RESULT)}
    )
    outcome = job_outcome(job([("Complete", "")]), [done])
    assert isinstance(outcome, Succeeded)
    assert outcome.result.artifact.digest == "sha256:" + "b" * 64
    assert outcome.result.resolved.parameter_count == 134515008


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (None, "left no ai.deckhouse.io/result annotation"),
        ("not json", "malformed"),
        (
            json.dumps({**RESULT, "artifact": {**RESULT["artifact"], "sizeBytes": 0}}),
            "malformed at artifact.sizeBytes",
        ),
        (json.dumps({**RESULT, "extra": 1}), "malformed at extra"),
    ],
)
def test_malformed_result_is_a_failure(annotation: str | None, message: str) -> None:
    annotations = {"ai.deckhouse.io/result": annotation} if annotation is not None else {}
    outcome = job_outcome(
        job([("Complete", "")]), [pod("p1", "Succeeded", exit_code=0, annotations=annotations)]
    )
    assert isinstance(outcome, Failed)
    assert outcome.reason == "InvalidWorkerResult"
    assert message in outcome.message


def test_permanent_failure_carries_the_worker_reason() -> None:
    pods = [
        pod(
            "p1",
            "Failed",
            exit_code=2,
            message=termination("SourceNotFound", "repository org/nope does not exist"),
        )
    ]
    outcome = job_outcome(job([("Failed", "PodFailurePolicy")], failed=1), pods)
    assert outcome == Failed("SourceNotFound", "repository org/nope does not exist")


def test_exhausted_retries_are_preparation_failed_with_the_last_message() -> None:
    pods = [
        pod(f"p{i}", "Failed", exit_code=1, message=termination("RegistryUnavailable", f"503 #{i}"))
        for i in range(1, 5)
    ]
    outcome = job_outcome(job([("Failed", "BackoffLimitExceeded")], failed=4), pods)
    assert outcome == Failed(
        "PreparationFailed", "gave up after 4 attempts; last error: RegistryUnavailable: 503 #4"
    )


def test_deadline_exceeded_says_which_setting() -> None:
    outcome = job_outcome(job([("Failed", "DeadlineExceeded")]), [])
    assert isinstance(outcome, Failed)
    assert outcome.message.startswith("the preparation did not finish within 600 seconds")


def test_termination_without_json_or_with_a_bad_reason() -> None:
    plain = parse_termination(pod("p1", "Failed", exit_code=137, message=""))
    assert plain is not None
    assert (plain.reason, plain.message) == (
        "PreparationFailed",
        "the worker exited with code 137 (Error)",
    )
    bad = parse_termination(
        pod("p1", "Failed", exit_code=2, message=termination("not a reason!", "m"))
    )
    assert bad is not None
    assert (bad.reason, bad.message) == ("PreparationFailed", "m")


def test_progress_ignores_garbage() -> None:
    assert (
        parse_progress(pod("p1", "Running", annotations={"ai.deckhouse.io/progress": "abc"}))
        is None
    )
    weird = parse_progress(
        pod(
            "p1",
            "Running",
            annotations={
                "ai.deckhouse.io/progress": "250",
                "ai.deckhouse.io/progress-detail": "[1]",
            },
        )
    )
    assert weird is not None
    assert (weird.percent, weird.bytes_total) == (100, None)


def test_oversized_result_is_refused() -> None:
    with pytest.raises(InvalidWorkerResult, match="over 65536"):
        parse_result(pod("p1", "Succeeded", annotations={"ai.deckhouse.io/result": "x" * 70000}))


# ---- between a pod's end and the Job's verdict -----------------------------------------------

PROGRESS = {
    "ai.deckhouse.io/progress": "100",
    "ai.deckhouse.io/progress-detail": json.dumps({"stage": "manifest"}),
}


def test_a_succeeded_pod_before_the_jobs_verdict_keeps_the_status() -> None:
    # The Job controller adds Complete a moment after the pod succeeds; in between the outcome
    # used to be "running, no progress", and the status stepped back to "starting".
    done = pod(
        "p1", "Succeeded", exit_code=0, annotations={**PROGRESS, "ai.deckhouse.io/result": "{}"}
    )
    assert job_outcome(job(), [done]) == Settling()


def test_a_permanent_failure_before_the_jobs_verdict_keeps_the_status() -> None:
    ended = pod("p1", "Failed", exit_code=2, message=termination("SourceNotFound", "no repo"))
    assert job_outcome(job(failed=1), [ended]) == Settling()


def test_the_last_attempt_failed_before_the_jobs_verdict_keeps_the_status() -> None:
    pods = [
        pod(f"p{i}", "Failed", exit_code=1, message=termination("SourceUnavailable", f"#{i}"))
        for i in range(1, 5)
    ]
    # status.failed lags: the fourth failure is still uncounted.
    lagging = job(failed=3)
    lagging["status"]["uncountedTerminatedPods"] = {"failed": ["uid-4"]}
    assert job_outcome(lagging, pods) == Settling()


@pytest.mark.parametrize(("failures", "seconds"), [(1, 10), (2, 20), (3, 40), (7, 600)])
def test_the_backoff_before_the_next_attempt_is_the_job_controllers(
    failures: int, seconds: int
) -> None:
    pods = [
        pod(f"p{i}", "Failed", exit_code=1, message=termination("SourceUnavailable", f"#{i}"))
        for i in range(1, failures + 1)
    ]
    outcome = job_outcome(job(failed=failures - 1, backoff=9), pods)
    assert isinstance(outcome, Running)
    assert (outcome.attempt, outcome.attempts, outcome.retry_in) == (failures + 1, 10, seconds)
    assert outcome.progress is None
    assert outcome.last_failure is not None
    assert outcome.last_failure.message == f"#{failures}"


def test_a_disrupted_pod_is_no_attempt() -> None:
    evicted = pod("p1", "Failed", exit_code=137)
    evicted["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True"}]
    assert job_outcome(job(), [evicted]) == Settling()
    outcome = job_outcome(job(), [evicted, pod("p2", "Running")])
    assert isinstance(outcome, Running)
    assert outcome.attempt == 1


def test_gave_up_counts_every_attempt_even_while_the_jobs_count_lags() -> None:
    # The Job's FailureTarget came while status.failed still said 3 of 4 ("attempt 4/4" was
    # followed by "gave up after 3 attempts").
    pods = [
        pod(f"p{i}", "Failed", exit_code=1, message=termination("SourceUnavailable", f"503 #{i}"))
        for i in range(1, 5)
    ]
    lagging = job([("FailureTarget", "BackoffLimitExceeded")], failed=3)
    outcome = job_outcome(lagging, pods)
    assert outcome == Failed(
        "PreparationFailed", "gave up after 4 attempts; last error: SourceUnavailable: 503 #4"
    )


def test_the_termination_log_tail_is_read_bounded_and_redacted() -> None:
    lines = [f"2026-11-30T10:00:0{i}Z info  line {i}" for i in range(12)]
    lines[-1] = "2026-11-30T10:00:11Z warn  answered 401 to Authorization: Bearer abc.def hf_XyZ123"
    message = json.dumps({"reason": "SourceUnavailable", "message": "503", "log": [*lines, 7]})
    ended = parse_termination(pod("p1", "Failed", exit_code=1, message=message))
    assert ended is not None
    assert ended.log == (
        *lines[2:11],
        "2026-11-30T10:00:11Z warn  answered 401 to Authorization: Bearer [redacted] [redacted]",
    )
    huge = json.dumps({"reason": "R", "message": "m", "log": ["x" * 5000] * 10})
    bounded = parse_termination(pod("p1", "Failed", exit_code=1, message=huge))
    assert bounded is not None
    assert [len(line) for line in bounded.log] == [401, 401, 401, 401, 401]
    assert sum(len(line.encode()) + 1 for line in bounded.log) <= 2048


def test_the_failure_carries_the_failing_attempts_log_lines() -> None:
    message = json.dumps({"reason": "SourceNotFound", "message": "no repo", "log": ["a", "b"]})
    ended = pod("p1", "Failed", exit_code=2, message=message)
    outcome = job_outcome(job([("Failed", "PodFailurePolicy")], failed=1), [ended])
    assert outcome == Failed("SourceNotFound", "no repo", ("a", "b"))
