"""What a preparation Job and its pods say about the attempt: running, succeeded or failed.

Pure: the Job and pod dicts (from the informer caches) in, an ``Outcome`` out. The real Job
controller has already applied ``backoffLimit`` and ``podFailurePolicy``; this module only
reads its verdict and the worker's own words (termination message, result annotation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.workerpod import (
    InvalidResult,
    Progress,
    Termination,
    WorkerResult,
    parse_progress,
    parse_result,
    parse_termination,
)

JSON = dict[str, Any]


@dataclass(frozen=True)
class Running:
    progress: Progress | None
    attempt: int
    """1-based number of the pod attempt now running (failed pods + 1)."""
    attempts: int
    """backoffLimit + 1."""
    last_failure: Termination | None


@dataclass(frozen=True)
class Succeeded:
    result: WorkerResult


@dataclass(frozen=True)
class Failed:
    reason: str
    message: str


Outcome = Running | Succeeded | Failed


def _true_conditions(job: JSON) -> dict[str, JSON]:
    conditions = job.get("status", {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def _by_creation(pods: list[JSON]) -> list[JSON]:
    return sorted(
        pods, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"])
    )


def _last_failure(pods: list[JSON]) -> Termination | None:
    failures = [t for p in _by_creation(pods) if (t := parse_termination(p)) and t.exit_code != 0]
    return failures[-1] if failures else None


def _succeeded(pods: list[JSON]) -> Outcome:
    done = [p for p in _by_creation(pods) if p.get("status", {}).get("phase") == "Succeeded"]
    if not done:
        return Failed("InvalidWorkerResult", "the Job completed but its worker pod is gone")
    try:
        return Succeeded(parse_result(done[-1]))
    except InvalidResult as error:
        return Failed("InvalidWorkerResult", str(error))


def _failed(job: JSON, condition: JSON, pods: list[JSON]) -> Failed:
    reason = condition.get("reason", "")
    last = _last_failure(pods)
    if reason == "PodFailurePolicy" and last is not None:
        return Failed(last.reason, last.message)
    attempts = int(job.get("status", {}).get("failed", 0))
    if reason == "BackoffLimitExceeded":
        detail = f"; last error: {last.reason}: {last.message}" if last else ""
        return Failed("PreparationFailed", f"gave up after {attempts} attempts{detail}")
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
    failed = int(job.get("status", {}).get("failed", 0))
    live = [
        p
        for p in _by_creation(pods)
        if p.get("status", {}).get("phase") in (None, "Pending", "Running")
    ]
    progress = parse_progress(live[-1]) if live else None
    backoff = int(job.get("spec", {}).get("backoffLimit", 6))
    return Running(progress, failed + 1, backoff + 1, _last_failure(pods))
