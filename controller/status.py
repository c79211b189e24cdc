"""The status the controller writes (docs/design.md §3): phases, the three conditions, progress.

Pure builders, one per situation, each returning the complete desired ``status`` dict. The
reconciler compares it with the current status and writes only when they differ; a condition
whose status did not change keeps its ``lastTransitionTime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.protocol import WorkerResult
from controller import humanize
from controller.workerpod import Progress, Termination

JSON = dict[str, Any]
READY, ARTIFACT, METADATA = "Ready", "ArtifactResolved", "MetadataResolved"
# Without these the model is not described enough to choose a runtime for it.
ESSENTIAL_METADATA = ("architecture", "format", "parameter_count")


@dataclass(frozen=True)
class Cond:
    type: str
    status: str
    reason: str
    message: str


def ready_condition(obj: JSON) -> JSON:
    """The object's Ready condition as it is now (empty when it has none)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == READY:
            return dict(cond)
    return {}


def _conditions(old: JSON, conds: list[Cond], generation: int, now: str) -> list[JSON]:
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    out = []
    for cond in conds:
        before = previous.get(cond.type, {})
        changed = before.get("status") != cond.status
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": generation,
                "lastTransitionTime": now if changed else before.get("lastTransitionTime", now),
            }
        )
    return out


def build(
    old: JSON, generation: int, now: str, phase: str, conds: list[Cond], **fields: Any
) -> JSON:
    status: JSON = {"phase": phase, "observedGeneration": generation}
    status["conditions"] = _conditions(old, conds, generation, now)
    if "upload" in old:
        status["upload"] = old["upload"]
    if (old.get("source") or {}).get("catalog"):  # frozen at import (docs/catalog.md)
        status["source"] = old["source"]
    status.update({k: v for k, v in fields.items() if v is not None})
    return status


def _waiting(reason: str, message: str) -> list[Cond]:
    return [
        Cond(READY, "False", reason, message),
        Cond(ARTIFACT, "False", reason, "the artifact is not published yet"),
        Cond(METADATA, "Unknown", reason, "the source has not been inspected yet"),
    ]


def queued(old: JSON, gen: int, now: str, position: int, running: int, limit: int) -> JSON:
    # No "of N": the queue's length changes with every new object, and rewriting every queued
    # object's status on each arrival would cost a write per waiting object.
    message = (
        f"queued: position {position} for a preparation slot "
        f"({running} of {limit} running; worker.maxConcurrent={limit})"
    )
    return build(old, gen, now, "Pending", _waiting("Queued", message))


def blocked(old: JSON, gen: int, now: str, reason: str, message: str) -> JSON:
    return build(old, gen, now, "Pending", _waiting(reason, message))


UPLOAD_GATEWAY_NOT_CONFIGURED = (
    "upload sessions need the upload gateway, and the controller's configuration has no "
    "upload.inClusterURL (the chart sets it when the gateway is installed)"
)


def upload_waiting_message(secret_namespace: str, secret_name: str, expires_at: str) -> str:
    return (
        f"waiting for an upload: kubectl get secret -n {secret_namespace} {secret_name} has "
        f"the URL and token (expires {expires_at})"
    )


def upload_progress_message(done: int, total: int | None, rate: float | None) -> str:
    """``uploading: 37.0 MiB of 87.0 MiB, 12.0 MiB/s``; without the total or the rate when
    they are not known."""
    message = f"uploading: {humanize.size(done)}"
    if total:
        message += f" of {humanize.size(total)}"
    if rate:
        message += f", {humanize.size(rate)}/s"
    return message


def waiting_for_upload(
    old: JSON, gen: int, now: str, upload: JSON, message: str, percent: int | None
) -> JSON:
    """Phase WaitForUpload; ``percent`` capped at 99 (100 % is Ready's)."""
    progress = f"{min(max(percent, 0), 99)}%" if percent is not None else None
    conds = _waiting("WaitForUpload", message)
    return build(old, gen, now, "WaitForUpload", conds, upload=upload, progress=progress)


def progress_message(progress: Progress | None) -> str:
    if progress is None:
        return "the preparation Job is starting"
    stage = progress.stage or "preparing"
    if progress.bytes_total:
        done = progress.bytes_done or 0
        parts = [
            f"{humanize.size(done)} of {humanize.size(progress.bytes_total)} ({progress.percent}%)"
        ]
        if progress.bytes_per_second and done < progress.bytes_total:  # no rate once all is sent
            parts.append(f"{humanize.size(progress.bytes_per_second)}/s")
            left = max(progress.bytes_total - done, 0) / progress.bytes_per_second
            parts.append(f"ETA {humanize.duration(left)}")
        where = f" {progress.file}" if progress.file else ""
        return f"{stage}{where}: " + ", ".join(parts)
    return f"{stage} ({progress.percent}%)" if progress.percent else stage


def retry_note(
    attempt: int, attempts: int, last: Termination | None, retry_in: int | None = None
) -> str | None:
    """What the attempts so far came to: ``None`` on the first attempt; during the Job's backoff
    ``retrying in 20s (attempt 3 of 4): <last error>``; while a retry runs
    ``retrying (attempt 3 of 4): <last error>``. The same count as ``gave up after 4 attempts``."""
    if attempt <= 1 or last is None:
        return None
    when = f" in {humanize.duration(retry_in)}" if retry_in is not None else ""
    return f"retrying{when} (attempt {attempt} of {attempts}): {last.reason}: {last.message}"


def with_log(message: str, job: str | None, lines: tuple[str, ...]) -> str:
    """An Event's message: ``message``, then the Job and the worker's last log lines."""
    if not lines:
        return f"{message} (Job {job})" if job else message
    where = f" of Job {job}" if job else ""
    return f"{message}\nlast worker log lines{where}:\n" + "\n".join(lines)


def publishing(
    old: JSON,
    gen: int,
    now: str,
    progress: Progress | None,
    retry_note: str | None,
    reason: str = "Publishing",
    job: str | None = None,
    waiting: bool = False,
    source: JSON | None = None,
) -> JSON:
    """Phase Publishing. ``waiting``: the Job's backoff before the next attempt, when no pod
    runs; the message is the retry note alone. ``source``: a catalog import's provenance,
    frozen when its Job is created."""
    message = progress_message(progress)
    if retry_note:
        message = retry_note if waiting else f"{retry_note}; {message}"
    if job:
        message = f"{message} (Job {job})"
    percent = f"{min(progress.percent, 99)}%" if progress else None
    conds = [
        Cond(READY, "False", reason, message),
        Cond(ARTIFACT, "False", "Publishing", "the artifact is being published"),
        Cond(METADATA, "Unknown", "Publishing", "the source is being inspected"),
    ]
    return build(old, gen, now, "Publishing", conds, progress=percent, source=source)


def ready(old: JSON, gen: int, now: str, result: WorkerResult) -> JSON:
    artifact = result.artifact
    size = humanize.size(artifact.size_bytes or 0)
    missing = [name for name in ESSENTIAL_METADATA if getattr(result.resolved, name) is None]
    if missing:
        metadata = Cond(
            METADATA, "True", "MetadataPartial", "not found in the source: " + ", ".join(missing)
        )
    else:
        metadata = Cond(
            METADATA, "True", "MetadataResolved", "metadata resolved from the source headers"
        )
    conds = [
        Cond(READY, "True", "Published", f"published {artifact.digest} ({size})"),
        Cond(ARTIFACT, "True", "ArtifactPublished", f"{artifact.digest} ({size})"),
        metadata,
    ]
    return build(
        old,
        gen,
        now,
        "Ready",
        conds,
        artifact=artifact.model_dump(mode="json", by_alias=True, exclude_none=True),
        resolved=result.resolved.model_dump(mode="json", by_alias=True, exclude_none=True),
        source=_source(old, result),
    )


def _source(old: JSON, result: WorkerResult) -> JSON:
    """The worker's ``source``; a catalog import keeps the provenance frozen at import."""
    source: JSON = result.source.model_dump(mode="json", by_alias=True, exclude_none=True)
    frozen = (old.get("source") or {}).get("catalog")
    if frozen:
        source["catalog"] = frozen
    return source


def failed(old: JSON, gen: int, now: str, reason: str, message: str) -> JSON:
    conds = [
        Cond(READY, "False", reason, message),
        Cond(ARTIFACT, "False", reason, "the artifact was not published"),
        Cond(METADATA, "Unknown", reason, "the preparation failed"),
    ]
    return build(old, gen, now, "Failed", conds, source=old.get("source"))


def deleting(old: JSON, gen: int, now: str, message: str) -> JSON:
    conds = [
        Cond(READY, "False", "Deleting", message),
        Cond(ARTIFACT, "False", "Deleting", message),
        Cond(METADATA, "Unknown", "Deleting", message),
    ]
    return build(old, gen, now, "Deleting", conds)


def same(a: JSON, b: JSON) -> bool:
    return a == b
