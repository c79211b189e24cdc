"""What a workload asks for and what it waits for: the consumption annotations, read and judged.

Pure. A workload names models with two top-level annotations (docs/consumption.md; the keys are
in ``api/protocol.py``): ``ai.deckhouse.io/model`` (Models of its namespace) and
``ai.deckhouse.io/clustermodel`` (ClusterModels), each a comma-separated list of names.
``parse_references`` turns them into ``ModelRef`` values or raises ``ConsumptionRefused`` with
a message the API server shows the user. ``readiness`` turns the observed models into either
the digests to materialize or the first model still waited for, with a message saying why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from api.meta import DNS_SUBDOMAIN_PATTERN
from api.protocol import ANNOTATION_CLUSTER_MODEL, ANNOTATION_MODEL
from controller.naming import Kind

MODELS_ROOT = "/models"
MAX_MODELS = 16
"""Names per workload (both annotations together): each model is a volume, a mount in every
container and a download before the pod starts; 16 is well beyond any real pod."""
MAX_NAME_LENGTH = 253
MAX_MESSAGE_LENGTH = 1024
_NAME = re.compile(DNS_SUBDOMAIN_PATTERN)
_KEYS: tuple[tuple[str, Kind], ...] = (
    (ANNOTATION_MODEL, "Model"),
    (ANNOTATION_CLUSTER_MODEL, "ClusterModel"),
)

JSON = dict[str, Any]
ModelLookup = Callable[[Kind, str, str], JSON | None]
"""(kind, namespace — empty for a ClusterModel, name) → the observed object or None."""


class ConsumptionRefused(Exception):  # noqa: N818 - a refusal shown to the user, not a crash
    """The workload cannot be admitted as written; ``reason`` is CamelCase, the message says
    what to change."""

    reason: ClassVar[str] = "ConsumptionRefused"


class InvalidModelAnnotation(ConsumptionRefused):
    reason = "InvalidModelAnnotation"


class ModelVolumeConflict(ConsumptionRefused):
    reason = "ModelVolumeConflict"


@dataclass(frozen=True, order=True)
class ModelRef:
    kind: Kind
    namespace: str
    """The workload's namespace for a Model; empty for a ClusterModel."""
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    @property
    def mount_path(self) -> str:
        return f"{MODELS_ROOT}/{self.name}"


def has_references(annotations: Mapping[str, str] | None) -> bool:
    return bool(annotations) and any(key in annotations for key, _ in _KEYS)  # type: ignore[operator]


def _names(key: str, value: str) -> list[str]:
    if value.count(",") + 1 > MAX_MODELS or len(value) > MAX_MODELS * (MAX_NAME_LENGTH + 8):
        raise InvalidModelAnnotation(
            f"annotation {key} names more than {MAX_MODELS} models; at most {MAX_MODELS} "
            "models per workload"
        )
    names: list[str] = []
    for position, raw in enumerate(value.split(","), start=1):
        name = raw.strip()
        if not name:
            raise InvalidModelAnnotation(
                f"annotation {key}: empty name at position {position} of {json.dumps(value)}; "
                "write model names separated by commas"
            )
        if len(name) > MAX_NAME_LENGTH or not _NAME.match(name):
            raise InvalidModelAnnotation(
                f"annotation {key}: {json.dumps(name[:MAX_NAME_LENGTH])} is not a valid model "
                "name (lowercase letters, digits, '-' and '.', starting and ending with a letter "
                f"or digit, at most {MAX_NAME_LENGTH} characters)"
            )
        if name in names:
            raise InvalidModelAnnotation(
                f"annotation {key}: {json.dumps(name)} is listed twice; name each model once"
            )
        names.append(name)
    return names


def parse_references(annotations: Mapping[str, str] | None, namespace: str) -> list[ModelRef]:
    """The models a workload names, Models first, each list in its written order;
    ``InvalidModelAnnotation`` on any bad entry."""
    refs: list[ModelRef] = []
    mounted: dict[str, str] = {}
    for key, kind in _KEYS:
        value = (annotations or {}).get(key)
        if value is None:
            continue
        for name in _names(key, value):
            if name in mounted:
                raise InvalidModelAnnotation(
                    f"{json.dumps(name)} is named by both {mounted[name]} and {key}; both would "
                    f"be mounted at {MODELS_ROOT}/{name}: rename one of the models"
                )
            mounted[name] = key
            refs.append(ModelRef(kind, namespace if kind == "Model" else "", name))
    if len(refs) > MAX_MODELS:
        raise InvalidModelAnnotation(
            f"annotations {ANNOTATION_MODEL} and {ANNOTATION_CLUSTER_MODEL} name {len(refs)} "
            f"models; at most {MAX_MODELS} models per workload"
        )
    return refs


# ---- readiness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Digest:
    ref: ModelRef
    digest: str


@dataclass(frozen=True)
class Waiting:
    """The first referenced model that is not Ready, and why, in words."""

    ref: ModelRef
    cause: str
    """Without progress: a change of cause is an Event (``Publishing``, ``not found``, …)."""
    progress: str = ""
    """``37%`` while publishing; changes of progress alone are not Events."""
    others: int = 0

    @property
    def message(self) -> str:
        text = f"waiting for {self.ref}: {self.cause}"
        if self.progress:
            text += f" ({self.progress})"
        if self.others:
            text += f"; {self.others} more model{'s' if self.others > 1 else ''} not Ready"
        return text[:MAX_MESSAGE_LENGTH]


def _digest_of(obj: JSON) -> str | None:
    status = obj.get("status") or {}
    digest = (status.get("artifact") or {}).get("digest")
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None  # new pods wait; running pods keep the files they already have
    if status.get("phase") == "Ready" and isinstance(digest, str) and digest:
        return digest
    return None


def _cause(ref: ModelRef, obj: JSON | None, lookup: ModelLookup) -> tuple[str, str]:
    if obj is None:
        hint = ""
        if ref.kind == "Model" and lookup("ClusterModel", "", ref.name) is not None:
            hint = (
                f" (a ClusterModel {ref.name} exists: name it in {ANNOTATION_CLUSTER_MODEL} "
                "instead)"
            )
        return f"not found{hint}", ""
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return "being deleted", ""
    status = obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    ready: JSON = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    if phase == "Failed":
        reason, message = ready.get("reason", ""), ready.get("message", "")
        detail = ": ".join(part for part in (reason, message) if part)
        return f"Failed ({detail})" if detail else "Failed", ""
    if phase == "Publishing":
        return "Publishing", str(status.get("progress") or "")
    if phase == "Ready":
        return "Ready without an artifact digest", ""
    return phase, ""


def readiness(refs: list[ModelRef], lookup: ModelLookup) -> list[Digest] | Waiting:
    """Every model's Ready digest, or what the first not-Ready model waits for."""
    digests: list[Digest] = []
    waiting: list[tuple[ModelRef, JSON | None]] = []
    for ref in refs:
        obj = lookup(ref.kind, ref.namespace, ref.name)
        digest = _digest_of(obj) if obj is not None else None
        if digest is None:
            waiting.append((ref, obj))
        else:
            digests.append(Digest(ref, digest))
    if not waiting:
        return digests
    ref, obj = waiting[0]
    cause, progress = _cause(ref, obj, lookup)
    return Waiting(ref, cause, progress, len(waiting) - 1)


def digests_annotation(digests: list[Digest]) -> str:
    """The value the init container reads: ``[{"kind", "name", "digest"}, …]``."""
    return json.dumps(
        [{"kind": d.ref.kind, "name": d.ref.name, "digest": d.digest} for d in digests],
        separators=(",", ":"),
    )


_PROGRESS = re.compile(r" \(\d{1,3}%\)(?=;|$)")


def waiting_cause(message: str) -> str:
    """A waiting message without its progress: what an Event is about."""
    return _PROGRESS.sub("", message)
