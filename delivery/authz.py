"""Who may fetch what: the delivery endpoint's authorization decision, pure.

A request names a repository of the delivery API (``model/<namespace>/<name>`` or
``clustermodel/<name>``) and a digest. It is allowed when, in this order:

1. the bearer token passed a TokenReview with our audience and is bound to a pod
   (``identity_of``; otherwise 401);
2. that pod exists with the token's uid (``pod_annotations``; a deleted or replaced pod: 401);
3. the pod's **top-level** annotations name the model — ``ai.deckhouse.io/model`` for a Model,
   which must live in the pod's own namespace, ``ai.deckhouse.io/clustermodel`` for a
   ClusterModel (``check_reference``; otherwise 403);
4. the manifest digest is the one recorded for this model in the pod's
   ``ai.deckhouse.io/model-digests`` annotation (a pod released while its model was being
   prepared again keeps the digest it was released with), or the model's current Ready digest
   (``allowed_manifests``; otherwise 403); a blob must be the config or a layer of such a
   manifest (``manifest_blobs``).

Every refusal carries a message for the pod's init container, e.g.
``Model ns-a/llama is not in the pod's namespace ns-b``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from api.protocol import ANNOTATION_CLUSTER_MODEL, ANNOTATION_DIGESTS, ANNOTATION_MODEL
from controller.consumption import ConsumptionRefused, ModelRef, parse_references
from controller.naming import Kind

JSON = dict[str, Any]
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
MAX_DIGESTS_ANNOTATION = 64 << 10
MAX_MANIFEST_BLOBS = 100_000
_NAME = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DIGEST = r"sha256:[0-9a-f]{64}"
_PATH = re.compile(
    rf"/v2/(?:model/(?P<ns>{_NAME})|clustermodel)/(?P<name>{_NAME})"
    rf"/(?P<what>manifests|blobs)/(?P<digest>{_DIGEST})"
)
_IS_DIGEST = re.compile(_DIGEST)


class Unauthenticated(Exception):  # noqa: N818 - answered as 401
    """The token is missing, invalid, expired, of another audience or not bound to a live pod."""


class Denied(Exception):  # noqa: N818 - answered as 403 DENIED
    """The pod is known but may not fetch this; the message says why."""


@dataclass(frozen=True)
class Target:
    """What one request asks for."""

    kind: Kind
    namespace: str
    """The namespace in the path for a Model; empty for a ClusterModel."""
    name: str
    what: Literal["manifests", "blobs"]
    digest: str

    @property
    def model(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def parse_path(path: str) -> Target | None:
    """The target of ``/v2/<repository>/(manifests|blobs)/<digest>``; None for anything else
    (a tag, another repository shape, a name longer than a Kubernetes name)."""
    found = _PATH.fullmatch(path)
    if found is None or len(found["name"]) > 253 or len(found["ns"] or "") > 63:
        return None
    what: Literal["manifests", "blobs"] = "blobs" if found["what"] == "blobs" else "manifests"
    if found["ns"] is None:
        return Target("ClusterModel", "", found["name"], what, found["digest"])
    return Target("Model", found["ns"], found["name"], what, found["digest"])


@dataclass(frozen=True)
class PodIdentity:
    namespace: str
    name: str
    uid: str
    service_account: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def identity_of(status: JSON, audience: str) -> PodIdentity:
    """The pod a TokenReview's ``status`` vouches for; ``Unauthenticated`` otherwise."""
    if status.get("authenticated") is not True:
        error = str(status.get("error") or "the token is not valid")[:300]
        raise Unauthenticated(f"token rejected by the API server: {error}")
    if audience not in (status.get("audiences") or []):
        raise Unauthenticated(f"the token is not for the audience {audience!r}")
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    namespace, _, account = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    extra = user.get("extra") or {}
    pod_name, pod_uid = _single(extra, POD_NAME_EXTRA), _single(extra, POD_UID_EXTRA)
    if not username.startswith(SERVICE_ACCOUNT_PREFIX) or not (namespace and account):
        raise Unauthenticated("the token is not a ServiceAccount token")
    if pod_name is None or pod_uid is None:
        raise Unauthenticated(
            "the token is not bound to a pod (use a projected serviceAccountToken volume)"
        )
    return PodIdentity(namespace, pod_name, pod_uid, account)


def _single(extra: Mapping[str, Any], key: str) -> str | None:
    values = extra.get(key)
    if isinstance(values, list) and len(values) == 1 and isinstance(values[0], str):
        return values[0]
    return None


def pod_annotations(identity: PodIdentity, pod: JSON | None) -> dict[str, str]:
    """The live pod's annotations; ``Unauthenticated`` when the token's pod is gone."""
    metadata = (pod or {}).get("metadata") or {}
    if pod is None or metadata.get("uid") != identity.uid:
        raise Unauthenticated(f"pod {identity} of the token no longer exists")
    annotations = metadata.get("annotations") or {}
    return {str(k): str(v) for k, v in annotations.items()}


def check_reference(target: Target, identity: PodIdentity, annotations: Mapping[str, str]) -> None:
    """``Denied`` unless the pod may consume the target's model at all."""
    if target.kind == "Model" and target.namespace != identity.namespace:
        raise Denied(
            f"{target.model} is not in the pod's namespace {identity.namespace}: a pod consumes "
            "Models of its own namespace and ClusterModels only"
        )
    namespace = identity.namespace if target.kind == "Model" else ""
    try:
        refs = parse_references(annotations, identity.namespace)
    except ConsumptionRefused as refused:
        raise Denied(f"pod {identity}: {refused}") from None
    if ModelRef(target.kind, namespace, target.name) not in refs:
        key = ANNOTATION_MODEL if target.kind == "Model" else ANNOTATION_CLUSTER_MODEL
        raise Denied(f"pod {identity} does not reference {target.model} (annotation {key})")


def recorded_digest(annotations: Mapping[str, str], kind: Kind, name: str) -> str | None:
    """The digest the pod's digests annotation records for the model, if any (a malformed
    annotation records nothing)."""
    raw = annotations.get(ANNOTATION_DIGESTS, "")
    if not raw or len(raw) > MAX_DIGESTS_ANNOTATION:
        return None
    try:
        entries = json.loads(raw)
    except ValueError:
        return None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("kind") == kind and entry.get("name") == name:
            digest = entry.get("digest")
            return digest if isinstance(digest, str) and _IS_DIGEST.fullmatch(digest) else None
    return None


def ready_digest(model: JSON) -> str | None:
    status = model.get("status") or {}
    digest = (status.get("artifact") or {}).get("digest")
    if (model.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if status.get("phase") == "Ready" and isinstance(digest, str) and _IS_DIGEST.fullmatch(digest):
        return digest
    return None


def allowed_manifests(
    target: Target, identity: PodIdentity, annotations: Mapping[str, str], model: JSON | None
) -> tuple[str, ...]:
    """The manifest digests the pod may fetch for the target's model (recorded first)."""
    if model is None:
        raise Denied(f"{target.model} does not exist")
    allowed: list[str] = []
    for digest in (recorded_digest(annotations, target.kind, target.name), ready_digest(model)):
        if digest is not None and digest not in allowed:
            allowed.append(digest)
    if not allowed:
        phase = (model.get("status") or {}).get("phase") or "no phase yet"
        raise Denied(
            f"{target.model} is not Ready ({phase}) and pod {identity} has no digest recorded "
            "for it"
        )
    return tuple(allowed)


def check_manifest(target: Target, identity: PodIdentity, allowed: tuple[str, ...]) -> None:
    if target.digest not in allowed:
        raise Denied(
            f"manifest {target.digest} is not the digest of {target.model} that pod {identity} "
            f"may fetch ({', '.join(allowed)})"
        )


@dataclass(frozen=True)
class BlobRef:
    digest: str
    size: int


def manifest_blobs(data: bytes) -> dict[str, BlobRef]:
    """The config and layers a manifest (already bounded to 4 MiB and digest-checked) names,
    by digest; descriptors without a sha256 digest or a size are ignored."""
    try:
        document = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    layers = document.get("layers")
    descriptors = [document.get("config"), *(layers if isinstance(layers, list) else [])]
    blobs: dict[str, BlobRef] = {}
    for descriptor in descriptors[: MAX_MANIFEST_BLOBS + 1]:
        if not isinstance(descriptor, dict):
            continue
        digest, size = descriptor.get("digest"), descriptor.get("size")
        if not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
            continue
        if isinstance(digest, str) and _IS_DIGEST.fullmatch(digest):
            blobs[digest] = BlobRef(digest, size)
    return blobs
