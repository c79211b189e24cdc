"""Reads what a worker pod reports (docs/design.md §4): progress annotations, the result annotation,
the termination message. Pure; worker output is untrusted input, so every value is bounded and
validated, and a malformed report is an error value, never an exception escaping a reconcile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from api import logtail
from api.protocol import (
    ANNOTATION_PROGRESS,
    ANNOTATION_PROGRESS_DETAIL,
    ANNOTATION_RESULT,
    WORKER_CONTAINER,
    InvalidWorkerResult,
    WorkerResult,
    parse_percent,
    parse_progress_detail,
)
from api.protocol import parse_result as parse_result_annotation

REASON = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
MAX_MESSAGE = 2048


@dataclass(frozen=True)
class Progress:
    percent: int
    stage: str | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    bytes_per_second: float | None = None
    file: str | None = None


@dataclass(frozen=True)
class Termination:
    exit_code: int
    reason: str
    message: str
    log: tuple[str, ...] = ()
    """The worker's last log lines (``api.logtail``: redacted, bounded)."""


def _annotations(pod: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = pod.get("metadata", {}).get("annotations") or {}
    return annotations


def parse_progress(pod: dict[str, Any]) -> Progress | None:
    annotations = _annotations(pod)
    percent = parse_percent(annotations.get(ANNOTATION_PROGRESS, ""))
    if percent is None:
        return None
    detail = parse_progress_detail(annotations.get(ANNOTATION_PROGRESS_DETAIL, ""))
    rate = detail.bytes_per_second
    return Progress(
        percent=percent,
        stage=detail.stage,
        bytes_done=detail.bytes_done,
        bytes_total=detail.bytes_total,
        bytes_per_second=float(rate) if rate is not None else None,
        file=detail.file,
    )


def parse_result(pod: dict[str, Any]) -> WorkerResult:
    """The result of a pod that exited 0; ``InvalidWorkerResult`` when it left none or a bad one."""
    text = _annotations(pod).get(ANNOTATION_RESULT)
    if text is None:
        raise InvalidWorkerResult(f"the worker exited 0 but left no {ANNOTATION_RESULT} annotation")
    return parse_result_annotation(text)


def worker_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == WORKER_CONTAINER:
            return dict(status)
    return None


def parse_termination(pod: dict[str, Any]) -> Termination | None:
    """The worker's exit: code plus the ``{reason, message}`` it wrote to the termination log."""
    status = worker_status(pod)
    terminated = (status or {}).get("state", {}).get("terminated")
    if not terminated:
        return None
    code = int(terminated.get("exitCode", -1))
    reason, message = "PreparationFailed", str(terminated.get("message") or "")
    try:
        data = json.loads(message) if message.startswith("{") else None
    except ValueError:
        data = None
    lines: list[str] = []
    if isinstance(data, dict):
        if isinstance(data.get("reason"), str) and REASON.match(data["reason"]):
            reason = data["reason"]
        message = str(data.get("message", ""))
        if isinstance(data.get("log"), list):
            lines = logtail.bounded(data["log"])
    if not message:
        message = f"the worker exited with code {code} ({terminated.get('reason', 'Error')})"
    return Termination(code, reason, logtail.redact(message)[:MAX_MESSAGE], tuple(lines))
