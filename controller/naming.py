"""Names the controller derives from an object: keys, Job and Secret names, artifact references.

All pure and deterministic, so a restarted controller finds (adopts) what it created before
instead of creating it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

GROUP = "ai.deckhouse.io"
FINALIZER = f"{GROUP}/cleanup"
RETRY_ANNOTATION = f"{GROUP}/retry"
WORKER_APP = "ai-models-worker"
LABEL_APP = "app.kubernetes.io/name"
LABEL_OWNER_KIND = f"{GROUP}/owner-kind"
LABEL_OWNER_UID = f"{GROUP}/owner-uid"
ANNOTATION_OWNER_NAMESPACE = f"{GROUP}/owner-namespace"
ANNOTATION_OWNER_NAME = f"{GROUP}/owner-name"
ANNOTATION_PROGRESS = f"{GROUP}/progress"
ANNOTATION_PROGRESS_DETAIL = f"{GROUP}/progress-detail"
ANNOTATION_RESULT = f"{GROUP}/result"
ANNOTATION_RETRY_OF = f"{GROUP}/retry-value"
MAX_REPOSITORY_LENGTH = 255

Kind = Literal["Model", "ClusterModel"]


@dataclass(frozen=True, order=True)
class ObjectKey:
    """What the work queue holds: the identity of one Model or ClusterModel."""

    kind: Kind
    namespace: str
    """Empty for a ClusterModel."""
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


def job_name(uid: str, retry: str | None) -> str:
    """``prepare-<uid>[-<hash of the retry value>]``: at most 53 characters (label-safe)."""
    name = f"prepare-{uid}"
    if retry:
        name += "-" + hashlib.sha256(retry.encode()).hexdigest()[:8]
    return name


def token_secret_name(job: str) -> str:
    """The per-Job Secret holding a private source's token."""
    return f"{job}-source-token"


def repository(prefix: str, key: ObjectKey, uid: str) -> str:
    """``<prefix>/model/<namespace>/<name>`` or ``<prefix>/clustermodel/<name>``; when that would
    exceed the registry's 255-character limit, ``<prefix>/model/<uid>``."""
    if key.kind == "ClusterModel":
        path = f"{prefix}/clustermodel/{key.name}"
    else:
        path = f"{prefix}/model/{key.namespace}/{key.name}"
    if len(path) > MAX_REPOSITORY_LENGTH:
        path = f"{prefix}/model/{uid}"
    return path


def artifact_reference(host: str, prefix: str, key: ObjectKey, uid: str) -> str:
    """Where the worker pushes: the repository tagged with the object's UID."""
    return f"{host}/{repository(prefix, key, uid)}:{uid}"
