"""Reads what a worker pod reports (DESIGN.md §4): progress annotations, the result annotation,
the termination message. Pure; worker output is untrusted input, so every value is bounded and
validated, and a malformed report is an error value, never an exception escaping a reconcile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from api import logtail
from api.model import ArtifactStatus, ResolvedMetadata, SourceStatus
from controller.naming import ANNOTATION_PROGRESS, ANNOTATION_PROGRESS_DETAIL, ANNOTATION_RESULT

MAX_REPORT_BYTES = 64 * 1024
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


class WorkerResult(BaseModel):
    """The ``ai.deckhouse.io/result`` annotation, in the exact shapes of the status fields."""

    model_config = ConfigDict(extra="forbid")

    artifact: ArtifactStatus
    resolved: ResolvedMetadata
    source: SourceStatus


class InvalidResult(Exception):  # noqa: N818 - becomes the condition reason InvalidWorkerResult
    pass


def _annotations(pod: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = pod.get("metadata", {}).get("annotations") or {}
    return annotations


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_progress(pod: dict[str, Any]) -> Progress | None:
    annotations = _annotations(pod)
    raw = annotations.get(ANNOTATION_PROGRESS, "")
    if not raw.strip().isdigit():
        return None
    percent = min(int(raw.strip()), 100)
    detail: dict[str, Any] = {}
    text = annotations.get(ANNOTATION_PROGRESS_DETAIL, "")
    if text and len(text) <= MAX_REPORT_BYTES:
        try:
            loaded = json.loads(text)
            detail = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            detail = {}
    rate = detail.get("bytesPerSecond")
    stage, file = detail.get("stage"), detail.get("file")
    return Progress(
        percent=percent,
        stage=stage[:64] if isinstance(stage, str) else None,
        bytes_done=_int(detail.get("bytesDone")),
        bytes_total=_int(detail.get("bytesTotal")),
        bytes_per_second=float(rate) if isinstance(rate, int | float) and rate >= 0 else None,
        file=file[:256] if isinstance(file, str) else None,
    )


def parse_result(pod: dict[str, Any]) -> WorkerResult:
    text = _annotations(pod).get(ANNOTATION_RESULT)
    if text is None:
        raise InvalidResult("the worker exited 0 but left no ai.deckhouse.io/result annotation")
    if len(text) > MAX_REPORT_BYTES:
        raise InvalidResult(f"the worker's result is {len(text)} bytes, over {MAX_REPORT_BYTES}")
    try:
        return WorkerResult.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidResult(
            f"the worker's result is malformed at {where}: {first['msg']}"
        ) from None


def worker_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == "worker":
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
