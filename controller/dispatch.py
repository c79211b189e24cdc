"""Dispatch: the queue of objects waiting for a preparation slot, and the creation of a Job.

A restarted controller adopts instead of duplicating: the Job's name is derived from the
object's UID and retry value, so creating it again answers 409 and the existing Job is used.
The retry value of the attempt is recorded on the object (annotation
``ai.deckhouse.io/retry-value``) before the Job is created, so a Failed object is retried only
when the user sets a new ``ai.deckhouse.io/retry``.

Admission to a slot is serialised (``admit``): the decision and the reservation of the slot
happen under one lock, and the reservation counts as a running preparation until
``create_job`` returns or raises, so two workers never both take the last slot while the
API writes of a start run outside the lock.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from controller import naming
from controller.caches import Caches
from controller.config import Config
from controller.errors import (
    ApiUnavailable,
    AuthSecretForbidden,
    AuthSecretInvalid,
    AuthSecretNotFound,
    Conflict,
    Forbidden,
    JobRenderFailed,
    KubeError,
)
from controller.jobs import JobRequest, build_job
from controller.kube import JOBS, SECRETS, KubeApi, model_resource
from controller.mountfrom import mount_candidates
from controller.naming import Kind, ObjectKey
from controller.status import ready_condition

JSON = dict[str, Any]
ADOPTION_WINDOW_SECONDS = 30.0
log = structlog.get_logger("dispatch")


def is_finished(job: JSON) -> bool:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return True
    return False


def _retry(obj: JSON) -> str:
    return str((obj["metadata"].get("annotations") or {}).get(naming.RETRY_ANNOTATION, ""))


# Objects that wait for the user (a missing Secret) hold no place in the slot queue: they would
# block everyone behind them. They are rechecked on their own and queue again once unblocked.
USER_BLOCKED_REASONS = frozenset(
    {"AuthSecretNotFound", "AuthSecretInvalid", "AuthSecretForbidden",
     # A catalog import that does not resolve (yet) or got no grant: rechecked on its own.
     "CatalogSourceNotReady", "CatalogSourceAmbiguous", "CatalogEntryNotFound",
     "CatalogVersionAmbiguous", "CatalogUnauthorized", "CatalogUnreachable", "CatalogTLSError",
     "CatalogMalformed", "CatalogDigestMismatch", "CredentialsSecretNotFound",
     "CredentialsSecretInvalid", "CASecretInvalid", "InvalidCatalogURL"}
)  # fmt: skip


def needs_slot(obj: JSON) -> bool:
    """Whether the object waits for (or holds) a preparation slot. An upload waits for one
    only once its bytes are committed and it was queued (until then it waits for the user)."""
    meta, st = obj["metadata"], obj.get("status") or {}
    source = obj["spec"]["source"]
    if meta.get("deletionTimestamp"):
        return False
    if "upload" in source:
        return st.get("phase") == "Pending" and ready_condition(obj).get("reason") == "Queued"
    if "url" not in source and "catalog" not in source:
        return False
    if st.get("phase") == "Pending" and ready_condition(obj).get("reason") in USER_BLOCKED_REASONS:
        return False
    attempted = (meta.get("annotations") or {}).get(naming.ANNOTATION_RETRY_OF, "")
    return st.get("phase") != "Ready" and not (
        st.get("phase") == "Failed" and attempted == _retry(obj)
    )


def grant_secret_name(job: str) -> str:
    """The per-Job Secret holding a catalog import's grant file (and the catalog's CA)."""
    return f"{job}-catalog-grant"


def _order(kind: str, obj: JSON) -> tuple[str, ...]:
    meta = obj["metadata"]
    return (meta.get("creationTimestamp", ""), kind, meta.get("namespace") or "", meta["name"])


def queue_place(position: int, running: int, limit: int) -> int:
    """0 when the ``position``-th oldest waiting object may start with ``running`` of ``limit``
    slots taken; else its place in the queue, from 1."""
    free = limit - running
    return 0 if position <= free else max(position - free, 1)


@dataclass(frozen=True)
class GrantedSource:
    """A catalog import's grant, asked once the Job has its slot."""

    url: str
    """The worker's source argument (``api.catalog_import.catalog_worker_source``)."""
    secret_data: dict[str, str] = field(repr=False)
    """The per-Job grant Secret's data (base64), mounted for the worker."""


@dataclass(frozen=True)
class JobSource:
    """What a Job prepares when it is not ``spec.source.url``: a committed upload, or a
    catalog entry (``grant``)."""

    url: str
    """The worker's source argument (``api.upload.worker_source``)."""
    mount_from: tuple[str, ...]
    description: str
    """For the ``PreparationStarted`` Event."""
    max_expanded_bytes: int | None = None
    """An upload: the most bytes its archive may unpack to."""
    grant: Callable[[], GrantedSource] | None = None
    """A catalog import: asks the grant (its ``url`` replaces ``url``); raises the catalog's
    errors (``CatalogError``), which leave nothing behind."""


@dataclass(frozen=True)
class Queued:
    """Not admitted: what the queued status shows."""

    position: int
    running: int
    limit: int


class Dispatcher:
    def __init__(
        self,
        kube: KubeApi,
        caches: Caches,
        config: Config,
        build: Callable[[JobRequest, Config], JSON] = build_job,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._build = build
        self._caches = caches
        self._config = config
        self._monotonic = monotonic
        self._admission = threading.Lock()
        """Held while one admission is decided and its slot reserved; never across API calls."""
        self._lock = threading.Lock()
        """Guards the fields below; held only for a moment."""
        self._reserved: set[str] = set()
        """Jobs admitted whose creation is in progress."""
        self._created: dict[str, float] = {}
        """Jobs created but perhaps not yet in the cache, so the slot count never undercounts."""
        self._version = 0
        self._order: tuple[int, dict[tuple[str, ...], int]] | None = None

    def running(self) -> int:
        """Preparations holding a slot: unfinished Jobs, and Jobs being or just created."""
        jobs = {j["metadata"]["name"]: j for j in self._caches.jobs.items()}
        now = self._monotonic()
        with self._lock:
            for name, at in list(self._created.items()):
                if name in jobs or now - at > ADOPTION_WINDOW_SECONDS:
                    del self._created[name]
            pending = (set(self._created) | self._reserved) - jobs.keys()
        return len(pending) + sum(1 for j in jobs.values() if not is_finished(j))

    def invalidate(self, job_seen: str | None = None) -> None:
        """Called by the event handlers on any Model or Job change: the queue may differ. A Job
        the informer has seen no longer needs counting as just created."""
        with self._lock:
            self._version += 1
            if job_seen is not None:
                self._created.pop(job_seen, None)

    def _waiting(self) -> dict[tuple[str, ...], int]:
        """Objects without a Job, oldest first → their 1-based place; recomputed only after a
        change (a burst of 1,000 reconciles must not sort 1,000 objects each)."""
        with self._lock:
            if self._order is not None and self._order[0] == self._version:
                return self._order[1]
            version, created = self._version, set(self._created) | self._reserved
        system = self._config.system_namespace
        waiting = []
        for cache, kind in (
            (self._caches.models, "Model"),
            (self._caches.cluster_models, "ClusterModel"),
        ):
            for other in cache.items():
                job = naming.job_name(other["metadata"].get("uid", ""), _retry(other))
                has_job = job in created or self._caches.job(system, job) is not None
                if needs_slot(other) and not has_job:
                    waiting.append(_order(kind, other))
        places = {entry: i + 1 for i, entry in enumerate(sorted(waiting))}
        with self._lock:
            self._order = (version, places)
        return places

    def queue_position(self, key: ObjectKey, obj: JSON) -> tuple[int, int]:
        """``(position, running)``: the 1-based place of ``obj`` among the objects waiting for
        a slot, oldest first, and the number of preparations running."""
        places = self._waiting()
        mine = _order(key.kind, obj)
        position = places.get(mine)
        if position is None:  # not in the snapshot yet: behind everyone older
            position = 1 + sum(1 for entry in places if entry < mine)
        return position, self.running()

    def admit(self, key: ObjectKey, obj: JSON, retry: str) -> Queued | None:
        """``None`` when ``obj`` may start its Job now: a slot is then reserved for it until
        ``create_job`` (which must follow) returns or raises. Otherwise its place in the queue.
        Only the decision is serialised, so two workers never both take the last slot."""
        name = naming.job_name(obj["metadata"]["uid"], retry)
        limit = self._config.worker.max_concurrent
        with self._admission:
            position, running = self.queue_position(key, obj)
            place = queue_place(position, running, limit)
            if place:
                return Queued(place, running, limit)
            with self._lock:
                self._reserved.add(name)
                self._version += 1
        return None

    def _read_token(self, key: ObjectKey, obj: JSON) -> str | None:
        """The base64 token of the ``authSecretRef`` Secret (``None`` without one)."""
        ref = obj["spec"]["source"].get("authSecretRef")
        if key.kind != "Model" or not ref:
            return None
        where = f"{key.namespace}/{ref['name']}"
        try:
            secret = self._kube.get(SECRETS, ref["name"], key.namespace)
        except Forbidden as error:
            raise AuthSecretForbidden(
                f"the controller may not read Secret {where} named by "
                f"spec.source.authSecretRef; namespace {key.namespace} is not in the chart's "
                "controller.authSecretNamespaces"
            ) from error
        if secret is None:
            raise AuthSecretNotFound(
                f"Secret {where} named by spec.source.authSecretRef does not exist; create it "
                "with the Hugging Face token under the key `token`"
            )
        token = str((secret.get("data") or {}).get("token", ""))
        try:
            usable = bool(base64.b64decode(token, validate=True).strip())
        except binascii.Error:
            usable = False
        if not usable:
            raise AuthSecretInvalid(f"Secret {where} has no non-empty key `token`")
        return token

    def _write_secret(self, key: ObjectKey, obj: JSON, name: str, data: dict[str, str]) -> None:
        body = {
            "metadata": {"name": name, "labels": self._labels(key, obj)},
            "type": "Opaque",
            "data": data,
        }
        try:
            self._kube.create(SECRETS, body, self._config.system_namespace)
        except Conflict:
            self._kube.merge_patch(SECRETS, name, {"data": data}, self._config.system_namespace)

    def _labels(self, key: ObjectKey, obj: JSON) -> dict[str, str]:
        return {
            naming.LABEL_APP: naming.WORKER_APP,
            naming.LABEL_OWNER_KIND: key.kind,
            naming.LABEL_OWNER_UID: obj["metadata"]["uid"],
        }

    def just_created(self, name: str) -> bool:
        """Whether the Job ``name`` was created moments ago and the informer has not shown it
        yet: a reconcile in that window must not start it again."""
        with self._lock:
            at = self._created.get(name)
        return at is not None and self._monotonic() - at <= ADOPTION_WINDOW_SECONDS

    def record_attempt(self, key: ObjectKey, obj: JSON, retry: str) -> JSON:
        """Marks ``retry`` as attempted on the object; returns the object as updated. The empty
        value is recorded as no annotation (and costs no write when there is none)."""
        recorded = (obj["metadata"].get("annotations") or {}).get(naming.ANNOTATION_RETRY_OF)
        if recorded == (retry or None):
            return obj
        patch = {"metadata": {"annotations": {naming.ANNOTATION_RETRY_OF: retry or None}}}
        return self._kube.merge_patch(
            model_resource(key.kind), key.name, patch, key.namespace or None
        )

    def create_job(
        self, key: ObjectKey, obj: JSON, retry: str, source: JobSource | None = None
    ) -> JSON:
        """Creates (or adopts) the attempt's Job; returns the object as updated. Ends the
        slot's reservation of ``admit``: the Job counts as created, or the slot is free again.

        The Job is rendered before anything is written, so a Job that cannot be rendered
        (``JobRenderFailed``) leaves no token Secret behind; nor does a Job the API server
        refuses to create."""
        name = naming.job_name(obj["metadata"]["uid"], retry)
        secrets: dict[str, dict[str, str]] = {}
        created = False
        try:
            token = self._read_token(key, obj)
            token_secret = naming.token_secret_name(name) if token else None
            if token_secret and token:
                secrets[token_secret] = {"token": token}
            grant_secret = None
            if source is not None and source.grant is not None:
                granted = source.grant()
                source, grant_secret = replace(source, url=granted.url), grant_secret_name(name)
                secrets[grant_secret] = granted.secret_data
            request = self._request(key, obj, retry, (token_secret, grant_secret), source)
            manifest = self._build(request, self._config)
            obj = self.record_attempt(key, obj, retry)
            for secret, data in secrets.items():
                self._write_secret(key, obj, secret, data)
            job = self._submit(key, manifest, name, tuple(secrets))
            created = True
        finally:
            with self._lock:
                self._reserved.discard(name)
                if created:
                    self._created[name] = self._monotonic()
                self._version += 1
        for secret in secrets if job else ():
            uid = job["metadata"]["uid"]
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}
            self._kube.merge_patch(
                SECRETS,
                secret,
                {"metadata": {"ownerReferences": [owner]}},
                self._config.system_namespace,
            )
        return obj

    def _request(
        self,
        key: ObjectKey,
        obj: JSON,
        retry: str,
        secrets: tuple[str | None, str | None],
        source: JobSource | None,
    ) -> JobRequest:
        """``secrets``: the names of the token Secret and the grant Secret, when written."""
        meta, registry = obj["metadata"], self._config.registry
        if source is None:
            url = obj["spec"]["source"]["url"]
            prepared: list[tuple[Kind, JSON]] = [
                *(("Model", m) for m in self._caches.models.items()),
                *(("ClusterModel", c) for c in self._caches.cluster_models.items()),
            ]
            source = JobSource(
                url, mount_candidates(url, meta["uid"], prepared, registry.prefix), url
            )
        return JobRequest(
            name=naming.job_name(meta["uid"], retry),
            namespace=self._config.system_namespace,
            owner_kind=key.kind,
            owner_uid=meta["uid"],
            owner_namespace=key.namespace,
            owner_name=key.name,
            retry=retry,
            source_url=source.url,
            destination=naming.artifact_reference(registry.host, registry.prefix, key, meta["uid"]),
            token_secret=secrets[0],
            grant_secret=secrets[1],
            owner_reference=self._owner_reference(key, obj),
            mount_from=source.mount_from,
            max_expanded_bytes=source.max_expanded_bytes,
        )

    def _submit(self, key: ObjectKey, manifest: JSON, name: str, secrets: tuple[str, ...]) -> JSON:
        """Creates the Job; adopts it when it exists already (409). Returns it (empty when it
        vanished right after the 409)."""
        system = self._config.system_namespace
        try:
            job = self._kube.create(JOBS, manifest, system)
        except Conflict:
            log.info("preparation Job adopted", key=str(key), job=f"{system}/{name}")
            return self._kube.get(JOBS, name, system) or {}
        except ApiUnavailable:
            raise  # the Job may exist after all: the retry adopts it and needs the Secret
        except KubeError as error:
            for secret in secrets:
                self._kube.delete(SECRETS, secret, system)
            if error.status in (400, 422):  # the API server found the rendered Job invalid
                raise JobRenderFailed(f"the API server rejected the Job: {error}") from error
            raise
        log.info("preparation Job created", key=str(key), job=f"{system}/{name}")
        return job

    @staticmethod
    def _owner_reference(key: ObjectKey, obj: JSON) -> JSON | None:
        # A namespaced Model cannot own an object in the system namespace; its Job is found by
        # the owner-uid label and removed by the finalizer.
        if key.kind != "ClusterModel":
            return None
        return {
            "apiVersion": obj["apiVersion"],
            "kind": "ClusterModel",
            "name": key.name,
            "uid": obj["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": False,
        }
