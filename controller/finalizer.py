"""Finalization of a Model or ClusterModel (finalizer ``ai.deckhouse.io/cleanup``).

Phase ``Deleting`` while it runs: delete the preparation Jobs (their pods go with them), wait
until no worker pod of the object runs (so nothing pushes after the cleanup), delete the
per-object Secrets and any upload session (its Secrets, its staging blob: ``uploads.py``),
delete the artifact's manifest from the registry — by the digest in status
and by the UID tag, which also catches a manifest pushed by a worker that was stopped before it
reported — and only then release the object. A registry that cannot be reached raises
``RegistryError``: the runner retries this key with backoff; other keys are not held up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from controller import naming, status
from controller.caches import Caches
from controller.config import Config
from controller.errors import KubeError, RegistryError
from controller.events import EventRecorder
from controller.kube import JOBS, SECRETS, KubeApi, model_resource
from controller.naming import ObjectKey
from controller.uploads import UploadSessions

JSON = dict[str, Any]
StatusWriter = Callable[[ObjectKey, JSON, JSON], JSON | None]
POD_WAIT_SECONDS = 2.0
log = structlog.get_logger("finalizer")


class ManifestStore(Protocol):
    """The registry as finalization needs it (``controller.registry.RegistryCleaner``)."""

    def resolve(self, repository: str, tag: str) -> str | None:
        """The digest ``tag`` points at; ``None`` when there is none."""
        ...

    def delete(self, repository: str, digest: str) -> bool:
        """Deletes the manifest; ``False`` when it was already gone."""
        ...


class Finalizer:
    def __init__(
        self,
        kube: KubeApi,
        caches: Caches,
        config: Config,
        registry: ManifestStore | None,
        events: EventRecorder,
        clock: Callable[[], str],
        uploads: UploadSessions,
    ) -> None:
        self._kube = kube
        self._caches = caches
        self._config = config
        self._registry = registry
        self._events = events
        self._now = clock
        self._uploads = uploads

    def _owned(self, items: list[JSON], uid: str) -> list[JSON]:
        return [
            o
            for o in items
            if (o["metadata"].get("labels") or {}).get(naming.LABEL_OWNER_UID) == uid
        ]

    def _deleting(self, key: ObjectKey, obj: JSON, write: StatusWriter, message: str) -> JSON:
        """Writes phase Deleting with ``message``; returns the object as it now is."""
        old = obj.get("status") or {}
        desired = status.deleting(old, obj["metadata"].get("generation", 1), self._now(), message)
        if old.get("artifact"):  # the digest in status finds the manifest: keep it until then
            desired["artifact"] = old["artifact"]
        return write(key, obj, desired) or obj

    def finalize(self, key: ObjectKey, obj: JSON, write: StatusWriter) -> float | None:
        meta = obj["metadata"]
        if naming.FINALIZER not in (meta.get("finalizers") or []):
            return None
        uid, system = meta["uid"], self._config.system_namespace
        for job in self._owned(self._caches.jobs.items(), uid):
            if not job["metadata"].get("deletionTimestamp"):
                self._kube.delete(JOBS, job["metadata"]["name"], system, "Background")
        live = [
            p["metadata"]["name"]
            for p in self._owned(self._caches.pods.items(), uid)
            if p.get("status", {}).get("phase") in (None, "Pending", "Running")
        ]
        if live:
            message = f"waiting for the worker pod {', '.join(sorted(live))} to stop"
            self._deleting(key, obj, write, message)
            return POD_WAIT_SECONDS
        if (obj.get("status") or {}).get("phase") != "Deleting":
            obj = self._deleting(key, obj, write, "cleaning up: Secrets and the artifact")
        if "upload" in obj["spec"]["source"]:
            self._uploads.close(key, obj, strict=True)
        secrets, _ = self._kube.list(SECRETS, system, f"{naming.LABEL_OWNER_UID}={uid}")
        for secret in secrets:
            self._kube.delete(SECRETS, secret["metadata"]["name"], system)
        removed = self._delete_artifact(key, obj, write)
        self._release(key, obj)
        log.info("finalized", key=str(key), artifacts=removed)
        what = f"artifact {', '.join(removed)} removed" if removed else "no artifact to remove"
        self._events.emit(obj, "Normal", "Deleted", f"preparation Job and Secrets removed; {what}")
        return None

    def _delete_artifact(self, key: ObjectKey, obj: JSON, write: StatusWriter) -> list[str]:
        """Deletes the artifact's manifest; returns the digests deleted."""
        if self._registry is None:
            return []
        uid = obj["metadata"]["uid"]
        repository = naming.repository(self._config.registry.prefix, key, uid)
        digest = ((obj.get("status") or {}).get("artifact") or {}).get("digest")
        try:
            tagged = self._registry.resolve(repository, uid)
            targets = sorted({d for d in (digest, tagged) if d})
            removed = [t for t in targets if self._registry.delete(repository, t)]
        except RegistryError as error:
            message = f"waiting for the registry to delete the artifact: {error}"
            with contextlib.suppress(KubeError):  # the registry's error is the one to retry on
                self._deleting(key, obj, write, message)
            raise
        return removed

    def _release(self, key: ObjectKey, obj: JSON) -> None:
        meta = obj["metadata"]
        rest = [f for f in meta.get("finalizers") or [] if f != naming.FINALIZER]
        patch = {"metadata": {"finalizers": rest, "resourceVersion": meta["resourceVersion"]}}
        self._kube.merge_patch(model_resource(key.kind), key.name, patch, key.namespace or None)
