"""One request's authorization, end to end: token → pod → reference → model → digest.

Glue between the pure decisions of ``authz`` and the lookups (``kubelookup``, ``upstream``).
``Gatekeeper.grant`` returns what to serve (the registry repository, and for a blob its size
from the authorized manifest) or raises ``Unauthenticated`` / ``Denied``.
"""

from __future__ import annotations

from dataclasses import dataclass

from delivery.authz import (
    Denied,
    Target,
    allowed_manifests,
    check_manifest,
    check_reference,
    manifest_blobs,
)
from delivery.kubelookup import ModelLookup, PodAuthenticator
from delivery.upstream import Upstream


@dataclass(frozen=True)
class Grant:
    repository: str
    """The model's repository in the registry."""
    size: int | None
    """A blob's size, from the authorized manifest's descriptor."""


class Gatekeeper:
    def __init__(self, pods: PodAuthenticator, models: ModelLookup, upstream: Upstream) -> None:
        self.pods = pods
        self.models = models
        self.upstream = upstream

    def identify(self, token: str) -> None:
        """``GET /v2/``: only that the token is a live pod's."""
        self.pods.pod_of(token)

    def grant(self, token: str, target: Target) -> Grant:
        identity, annotations = self.pods.pod_of(token)
        check_reference(target, identity, annotations)
        model = self.models.get(target.kind, target.namespace, target.name)
        allowed = allowed_manifests(target, identity, annotations, model)
        assert model is not None  # allowed_manifests refused a missing model
        uid = str((model.get("metadata") or {}).get("uid") or "")
        repo = self.upstream.repository(target.kind, target.namespace, target.name, uid)
        if target.what == "manifests":
            check_manifest(target, identity, allowed)
            return Grant(repo, None)
        for digest in allowed:
            blob = manifest_blobs(self.upstream.manifest(repo, digest).data).get(target.digest)
            if blob is not None:
                return Grant(repo, blob.size)
        raise Denied(
            f"blob {target.digest} is not part of the manifest of {target.model} that pod "
            f"{identity} may fetch ({', '.join(allowed)})"
        )
