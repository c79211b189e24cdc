"""Reading a Model/ClusterModel as the CLI needs it: where it stands (``Observed``), what a
person reads once it is Ready (``describe``, the layout of ``ai-models-worker inspect``). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from api.model import ArtifactStatus, ResolvedMetadata, SourceStatus, UploadStatus

JSON = dict[str, Any]


@dataclass(frozen=True)
class Observed:
    phase: str
    reason: str
    message: str
    progress: str
    upload: UploadStatus | None
    is_upload: bool

    @property
    def summary(self) -> str:
        text = f"phase {self.phase}" if self.phase else "no status yet"
        if self.progress:
            text += f" {self.progress}"
        if self.reason:
            text += f" ({self.reason}: {self.message})" if self.message else f" ({self.reason})"
        return text


def _ready(status: JSON) -> JSON:
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition
    return {}


def observe(obj: JSON) -> Observed:
    status = obj.get("status") or {}
    ready = _ready(status)
    upload: UploadStatus | None = None
    if status.get("upload"):
        try:
            upload = UploadStatus.model_validate(status["upload"])
        except ValidationError:
            upload = None
    source = ((obj.get("spec") or {}).get("source")) or {}
    return Observed(
        phase=str(status.get("phase") or ""),
        reason=str(ready.get("reason") or ""),
        message=str(ready.get("message") or ""),
        progress=str(status.get("progress") or ""),
        upload=upload if upload and upload.secret_name and upload.secret_namespace else None,
        is_upload="upload" in source,
    )


def _wire(model: type[ArtifactStatus | ResolvedMetadata | SourceStatus], raw: Any) -> JSON:
    """The field as the API models read it (an unknown newer field keeps the raw value)."""
    if not isinstance(raw, dict):
        return {}
    try:
        return model.model_validate(raw).to_wire()
    except ValidationError:
        return raw


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def describe(obj: JSON) -> str:
    """The digest, the artifact and the resolved metadata, one ``key  value`` line each."""
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    where = (
        f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
    )
    artifact = _wire(ArtifactStatus, status.get("artifact"))
    lines = [f"{'model':<24} {obj.get('kind', 'Model')} {where}"]
    lines += [
        f"{key:<24} {_value(artifact[key])}"
        for key in ("digest", "sizeBytes", "mediaType")
        if key in artifact
    ]
    lines += [
        f"{key:<24} {_value(v)}"
        for key, v in _wire(ResolvedMetadata, status.get("resolved")).items()
    ]
    source = _wire(SourceStatus, status.get("source"))
    if source:
        lines.append(
            f"{'source':<24} {source.get('resolvedType')} @ {source.get('resolvedRevision')}"
        )
    return "\n".join(lines) + "\n"
