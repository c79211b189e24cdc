"""Dispatch: the creation of a preparation Job once the slot queue (``slots.py``) admitted it.

A restarted controller adopts instead of duplicating: the Job's name is derived from the
object's UID and retry value, so creating it again answers 409 and the existing Job is used.
The retry value of the attempt is recorded on the object (annotation
``ai.deckhouse.io/retry-value``) before the Job is created, so a Failed object is retried only
when the user sets a new ``ai.deckhouse.io/retry``.

``create_job`` ends the slot's reservation (``Slots.release``) whatever happens: the Job
exists and counts as running, or the slot is free again.
"""

from __future__ import annotations

import base64
import binascii
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
from controller.slots import Slots

JSON = dict[str, Any]
log = structlog.get_logger("dispatch")


def grant_secret_name(job: str) -> str:
    """The per-Job Secret holding a catalog import's grant file (and the catalog's CA)."""
    return f"{job}-catalog-grant"


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


class Dispatcher:
    def __init__(
        self,
        kube: KubeApi,
        caches: Caches,
        config: Config,
        slots: Slots,
        build: Callable[[JobRequest, Config], JSON] = build_job,
    ) -> None:
        self._kube = kube
        self._build = build
        self._caches = caches
        self._config = config
        self.slots = slots

    def read_token(self, key: ObjectKey, obj: JSON) -> str | None:
        """The base64 token of the ``authSecretRef`` Secret (``None`` without one); raises
        ``PreparationBlocked`` (``AuthSecret*``) when it cannot be used."""
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
        slot's reservation of ``Slots.admit``: the Job counts as created, or the slot is free
        again.

        The Job is rendered before anything is written, so a Job that cannot be rendered
        (``JobRenderFailed``) leaves no token Secret behind; nor does a Job the API server
        refuses to create."""
        name = naming.job_name(obj["metadata"]["uid"], retry)
        secrets: dict[str, dict[str, str]] = {}
        created = False
        try:
            token = self.read_token(key, obj)
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
            self.slots.release(key, name, created)
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
