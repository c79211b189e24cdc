"""The webhook's mutations, as pure functions: object in, JSONPatch operations out.

``inject_pod`` gives a consuming pod its model volumes, read-only mounts at ``/models/<name>``
and env in every container and init container, the ``ai-models-materialize`` init container
(first), and either the digests annotation (every model Ready) or the scheduling gate, the
gated label and the waiting annotation. ``copy_to_template`` copies a workload's two
annotations into its pod template, so the pods it creates reach the pod webhook. Each returns
``[]`` when there is nothing to change (idempotent) and raises ``ConsumptionRefused`` when the
object collides with what would be injected: nothing is silently overwritten.

Operations replace whole top-level members (``/spec/volumes``, ``/metadata/annotations``, …):
``add`` on an existing member replaces it (RFC 6902), so the patch is short and exact.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from api.protocol import (
    ANNOTATION_CLUSTER_MODEL,
    ANNOTATION_DIGESTS,
    ANNOTATION_MODEL,
    ANNOTATION_WAITING,
    LABEL_GATED,
    SCHEDULING_GATE,
)
from controller.config import MaterializeConfig
from controller.consumption import (
    MODELS_ROOT,
    Digest,
    ModelRef,
    ModelVolumeConflict,
    Waiting,
    digests_annotation,
)

JSON = dict[str, Any]
INIT_CONTAINER = "ai-models-materialize"
DIGESTS_VOLUME = "ai-models-digests"
TOKEN_VOLUME = "ai-models-token"  # noqa: S105 - a path, not a secret
DIGESTS_DIR = "/var/run/ai-models/digests"
DIGESTS_FILE = "model-digests.json"
TOKEN_DIR = "/var/run/ai-models/token"  # noqa: S105 - a path, not a secret
TOKEN_FILE = "token"  # noqa: S105 - a path, not a secret
MAX_VOLUME_NAME = 63
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")


def volume_name(ref: ModelRef) -> str:
    """``ai-models-<kind>-<name>``; a name with dots, or too long for a volume name (a DNS
    label, 63 characters), becomes a prefix of it plus 8 hex of a hash of kind and name."""
    base = f"ai-models-{ref.kind.lower()}-{ref.name}"
    if "." not in ref.name and len(base) <= MAX_VOLUME_NAME:
        return base
    tag = hashlib.sha256(f"{ref.kind}/{ref.name}".encode()).hexdigest()[:8]
    return f"{base.replace('.', '-')[: MAX_VOLUME_NAME - 9]}-{tag}"


def _under_models(path: str) -> bool:
    clean = "/" + path.strip("/")
    return clean == MODELS_ROOT or clean.startswith(MODELS_ROOT + "/")


def _check_collisions(spec: JSON, ours: set[str]) -> None:
    for volume in spec.get("volumes") or []:
        if volume.get("name") in ours:
            raise ModelVolumeConflict(
                f"the pod already defines volume {volume.get('name')!r}, a name the ai-models "
                "webhook reserves for model volumes: rename it"
            )
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            for mount in container.get("volumeMounts") or []:
                if _under_models(str(mount.get("mountPath", ""))):
                    raise ModelVolumeConflict(
                        f"container {container.get('name')!r} mounts {mount.get('mountPath')!r}; "
                        f"{MODELS_ROOT} and the paths under it are where the ai-models webhook "
                        "mounts models: move that mount"
                    )


def _init_container(refs: list[ModelRef], settings: MaterializeConfig) -> JSON:
    mounts = [
        {"name": volume_name(ref), "mountPath": ref.mount_path, "readOnly": False} for ref in refs
    ]
    mounts += [
        {"name": DIGESTS_VOLUME, "mountPath": DIGESTS_DIR, "readOnly": True},
        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
    ]
    return {
        "name": INIT_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [
            "ai-models-worker",
            "materialize-pod",
            "--digests",
            f"{DIGESTS_DIR}/{DIGESTS_FILE}",
            "--token",
            f"{TOKEN_DIR}/{TOKEN_FILE}",
            "--endpoint",
            settings.delivery_endpoint,
            "--to",
            MODELS_ROOT,
        ],
        "env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
        "resources": copy.deepcopy(settings.resources),
        "securityContext": copy.deepcopy(settings.security_context),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _volumes(refs: list[ModelRef], settings: MaterializeConfig) -> list[JSON]:
    volumes: list[JSON] = [{"name": volume_name(ref), "emptyDir": {}} for ref in refs]
    volumes.append(
        {
            "name": DIGESTS_VOLUME,
            "downwardAPI": {
                "items": [
                    {
                        "path": DIGESTS_FILE,
                        "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_DIGESTS}']"},
                    }
                ]
            },
        }
    )
    token = {
        "audience": settings.token_audience,
        "expirationSeconds": settings.token_expiration_seconds,
        "path": TOKEN_FILE,
    }
    volumes.append(
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}
    )
    return volumes


def _consume(container: JSON, refs: list[ModelRef]) -> None:
    """Read-only mounts and env in one of the pod's own containers; a variable the user set
    keeps the user's value."""
    mounts = container.setdefault("volumeMounts", [])
    mounts.extend(
        {"name": volume_name(ref), "mountPath": ref.mount_path, "readOnly": True} for ref in refs
    )
    env = container.setdefault("env", [])
    present = {item.get("name") for item in env}
    wanted = [("AI_MODELS_DIR", MODELS_ROOT)]
    if len(refs) == 1:
        wanted.append(("AI_MODEL_PATH", refs[0].mount_path))
    env.extend({"name": k, "value": v} for k, v in wanted if k not in present)


def inject_pod(
    pod: JSON, refs: list[ModelRef], state: list[Digest] | Waiting, settings: MaterializeConfig
) -> list[JSON]:
    """The JSONPatch that makes ``pod`` consume ``refs``; ``[]`` when already injected."""
    spec = pod.get("spec") or {}
    if any(c.get("name") == INIT_CONTAINER for c in spec.get("initContainers") or []):
        return []
    ours = {volume_name(ref) for ref in refs} | {DIGESTS_VOLUME, TOKEN_VOLUME}
    _check_collisions(spec, ours)
    meta = pod.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    labels = dict(meta.get("labels") or {})
    gates = list(spec.get("schedulingGates") or [])
    if isinstance(state, Waiting):
        annotations[ANNOTATION_WAITING] = state.message
        labels[LABEL_GATED] = "true"
        if all(g.get("name") != SCHEDULING_GATE for g in gates):
            gates.append({"name": SCHEDULING_GATE})
    else:
        annotations[ANNOTATION_DIGESTS] = digests_annotation(state)
    init = copy.deepcopy(spec.get("initContainers") or [])
    containers = copy.deepcopy(spec.get("containers") or [])
    for container in [*init, *containers]:
        _consume(container, refs)
    ops: list[JSON] = [
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
        {"op": "add", "path": "/metadata/labels", "value": labels},
        {
            "op": "add",
            "path": "/spec/volumes",
            "value": [*(spec.get("volumes") or []), *_volumes(refs, settings)],
        },
        {
            "op": "add",
            "path": "/spec/initContainers",
            "value": [_init_container(refs, settings), *init],
        },
        {"op": "add", "path": "/spec/containers", "value": containers},
    ]
    if gates != list(spec.get("schedulingGates") or []):
        ops.append({"op": "add", "path": "/spec/schedulingGates", "value": gates})
    return ops


def template_path(kind: str) -> str:
    if kind == "CronJob":
        return "/spec/jobTemplate/spec/template"
    return "/spec/template"


def _at(obj: JSON, path: str) -> Any:
    node: Any = obj
    for part in path.strip("/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def copy_to_template(workload: JSON, kind: str) -> list[JSON]:
    """The JSONPatch that makes the pod template carry the workload's consumption annotations
    (and drop those the workload no longer has); ``[]`` when it already does."""
    path = template_path(kind)
    template = _at(workload, path)
    if not isinstance(template, dict):
        return []  # the API server's own validation refuses such an object
    source = (workload.get("metadata") or {}).get("annotations") or {}
    metadata = dict(template.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    for key in (ANNOTATION_MODEL, ANNOTATION_CLUSTER_MODEL):
        if key in source:
            annotations[key] = source[key]
        else:
            annotations.pop(key, None)
    if annotations == (metadata.get("annotations") or {}):
        return []
    metadata["annotations"] = annotations
    return [{"op": "add", "path": f"{path}/metadata", "value": metadata}]
