"""Names the controller derives from an object: keys, Job and Secret names, artifact references.

All pure and deterministic, so a restarted controller finds (adopts) what it created before
instead of creating it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Defined in api/protocol.py; re-exported because dispatch, reconciler, finalizer and manager
# (and their tests) address them as ``naming.<KEY>``.
from api.protocol import ANNOTATION_RESULT as ANNOTATION_RESULT
from api.protocol import ANNOTATION_RETRY_OF as ANNOTATION_RETRY_OF
from api.protocol import FINALIZER as FINALIZER
from api.protocol import LABEL_APP as LABEL_APP
from api.protocol import LABEL_OWNER_KIND as LABEL_OWNER_KIND
from api.protocol import LABEL_OWNER_UID as LABEL_OWNER_UID
from api.protocol import RETRY_ANNOTATION as RETRY_ANNOTATION
from api.protocol import WORKER_APP as WORKER_APP
from api.protocol import attempt_suffix

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
    return f"prepare-{uid}{attempt_suffix(retry)}"


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
