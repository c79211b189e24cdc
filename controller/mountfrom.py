"""Which repositories may already hold a new preparation's blobs (cross-repository mount).

Models with one source share their weight files byte for byte; each Model has its own
repository, so without a hint every preparation would download every byte from the source
again. ``mount_candidates`` names the repositories of Ready Models and ClusterModels whose
``spec.source.url`` names the same repository (``api.source.source_repository``: every spelling
of it), newest first, at most ``MAX_CANDIDATES``. The worker gets them in
``$AI_MODELS_MOUNT_FROM`` and, for each file whose sha256 the source states, asks the registry
to mount the blob from one of them before it downloads anything (docs/oci.md). A candidate at
another revision costs one refused mount request per file; nothing is ever copied by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from api.source import source_repository
from controller import naming

MAX_CANDIDATES = 8  # the worker's bound too (worker/oci/target.py)
JSON = dict[str, Any]


def _is_ready(obj: JSON) -> bool:
    status = obj.get("status") or {}
    return status.get("phase") == "Ready" and bool((status.get("artifact") or {}).get("digest"))


def _key(kind: naming.Kind, obj: JSON) -> naming.ObjectKey:
    meta = obj["metadata"]
    return naming.ObjectKey(kind, meta.get("namespace") or "", meta["name"])


def mount_candidates(
    source_url: str,
    own_uid: str,
    objects: Iterable[tuple[naming.Kind, JSON]],
    prefix: str,
) -> tuple[str, ...]:
    """Repositories (without host) of Ready objects with the same source repository."""
    wanted = source_repository(source_url)
    if wanted is None:
        return ()
    found: list[tuple[str, str]] = []
    for kind, obj in objects:
        meta = obj.get("metadata") or {}
        url = ((obj.get("spec") or {}).get("source") or {}).get("url")
        if meta.get("uid") == own_uid or not isinstance(url, str) or not _is_ready(obj):
            continue
        if source_repository(url) == wanted:
            repository = naming.repository(prefix, _key(kind, obj), meta["uid"])
            found.append((meta.get("creationTimestamp") or "", repository))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    unique = dict.fromkeys(repository for _, repository in found)
    return tuple(unique)[:MAX_CANDIDATES]
