"""What a preparation Job and its pods say about the attempt: running, succeeded or failed.

Pure: the Job and pod dicts (from the informer caches) in, an ``Outcome`` out. The real Job
controller has already applied ``backoffLimit`` and ``podFailurePolicy``; this module only
reads its verdict and the worker's own words (termination message, result annotation).

Between a pod's end and the Job's verdict (a fraction of a second, or the Job's backoff before
the next attempt) the pods alone say what comes next: ``Settling`` when the verdict is a matter
of moments (the pod succeeded, failed permanently or used the last attempt) — the status stays
as it is, so it never steps back to "starting" right before Ready or Failed — and ``Running``
with ``retry_in`` during the backoff before the next attempt. Attempts are counted the way the
Job controller counts them: failed pods (a disrupted pod is no attempt), backoffLimit + 1 in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.protocol import PERMANENT_EXIT_CODE, SUCCESS_EXIT_CODE, InvalidWorkerResult, WorkerResult
from controller.workerpod import (
    Progress,
    Termination,
    parse_progress,
    parse_result,
    parse_termination,
)

JSON = dict[str, Any]


# The Job controller's pod failure backoff (pkg/controller/job: DefaultJobPodFailureBackOff,
# MaxJobPodFailureBackOff): 10 s after the first failure, doubling, at most 10 minutes.
JOB_BACKOFF_SECONDS = 10
JOB_BACKOFF_MAX_SECONDS = 600


@dataclass(frozen=True)
class Running:
    progress: Progress | None
    attempt: int
    """1-based number of the attempt running, or next to run when ``retry_in`` is set."""
    attempts: int
    """backoffLimit + 1."""
    last_failure: Termination | None
    retry_in: int | None = None
    """Seconds of the Job's backoff before ``attempt`` starts; ``None`` while a pod runs."""


@dataclass(frozen=True)
class Settling:
    """The latest pod has ended and the Job's verdict follows at once: keep the status."""


@dataclass(frozen=True)
class Succeeded:
    result: WorkerResult


@dataclass(frozen=True)
class Failed:
    reason: str
    message: str
    log: tuple[str, ...] = ()
    """The failing attempt's last log lines (from its termination message)."""


Outcome = Running | Settling | Succeeded | Failed


def _true_conditions(job: JSON) -> dict[str, JSON]:
    conditions = job.get("status", {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def _by_creation(pods: list[JSON]) -> list[JSON]:
    return sorted(
        pods, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"])
    )


def _last_failure(pods: list[JSON]) -> Termination | None:
    failures = [
        t
        for p in _by_creation(pods)
        if (t := parse_termination(p)) and t.exit_code != SUCCESS_EXIT_CODE
    ]
    return failures[-1] if failures else None


def _disrupted(pod: JSON) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions
    )


def failed_attempts(job: JSON, pods: list[JSON]) -> int:
    """Failed attempts as the Job controller counts them: ``status.failed`` plus the failures
    it has seen but not yet counted, or the failed pods at hand when those are more (the pod
    informer can be ahead of the Job's status)."""
    st = job.get("status", {})
    uncounted = (st.get("uncountedTerminatedPods") or {}).get("failed") or []
    failed_pods = [
        p for p in pods if p.get("status", {}).get("phase") == "Failed" and not _disrupted(p)
    ]
    return max(int(st.get("failed", 0)) + len(uncounted), len(failed_pods))


def attempts_of(job: JSON) -> int:
    return int(job.get("spec", {}).get("backoffLimit", 6)) + 1


def backoff_seconds(failures: int) -> int:
    """The Job controller's wait before the attempt after ``failures`` consecutive failures."""
    doublings = min(max(failures - 1, 0), 10)  # 10 s * 2**6 is past the cap already
    return min(JOB_BACKOFF_SECONDS << doublings, JOB_BACKOFF_MAX_SECONDS)


def _succeeded(pods: list[JSON]) -> Outcome:
    done = [p for p in _by_creation(pods) if p.get("status", {}).get("phase") == "Succeeded"]
    if not done:
        return Failed("InvalidWorkerResult", "the Job completed but its worker pod is gone")
    try:
        return Succeeded(parse_result(done[-1]))
    except InvalidWorkerResult as error:
        return Failed("InvalidWorkerResult", str(error))


def _failed(job: JSON, condition: JSON, pods: list[JSON]) -> Failed:
    reason = condition.get("reason", "")
    last = _last_failure(pods)
    if reason == "PodFailurePolicy" and last is not None:
        return Failed(last.reason, last.message, last.log)
    if reason == "BackoffLimitExceeded":
        # The Job gives up when the failures exceed backoffLimit: after exactly its attempts.
        detail = f"; last error: {last.reason}: {last.message}" if last else ""
        message = f"gave up after {attempts_of(job)} attempts{detail}"
        return Failed("PreparationFailed", message, last.log if last else ())
    if reason == "DeadlineExceeded":
        limit = job.get("spec", {}).get("activeDeadlineSeconds")
        return Failed(
            "PreparationFailed",
            f"the preparation did not finish within {limit} seconds (activeDeadlineSeconds); "
            "raise worker.activeDeadlineSeconds for very large models",
        )
    message = condition.get("message") or f"the preparation Job failed ({reason})"
    return Failed("PreparationFailed", message)


def job_outcome(job: JSON, pods: list[JSON]) -> Outcome:
    conditions = _true_conditions(job)
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return _succeeded(pods)
    for kind in ("Failed", "FailureTarget"):
        if kind in conditions:
            return _failed(job, conditions[kind], pods)
    return _between_verdicts(job, pods)


def _between_verdicts(job: JSON, pods: list[JSON]) -> Outcome:
    failures, attempts = failed_attempts(job, pods), attempts_of(job)
    last_failure = _last_failure(pods)
    ordered = _by_creation(pods)
    latest = ordered[-1] if ordered else None
    phase = (latest or {}).get("status", {}).get("phase")
    if latest is None or phase in (None, "Pending", "Running"):
        progress = parse_progress(latest) if latest is not None else None
        return Running(progress, failures + 1, attempts, last_failure)
    if phase == "Succeeded" or _disrupted(latest):
        return Settling()  # Complete follows; a disrupted pod is replaced at once
    ended = parse_termination(latest)
    if (ended is not None and ended.exit_code == PERMANENT_EXIT_CODE) or failures >= attempts:
        return Settling()  # podFailurePolicy or backoffLimit fails the Job now
    return Running(None, failures + 1, attempts, last_failure, backoff_seconds(failures))
