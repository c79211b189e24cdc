"""Upload sessions, the controller's half (docs/upload.md).

For an object with ``spec.source.upload`` the controller issues a session (``api.upload``): a
*user Secret* with the URL and the token (in the Model's namespace; for a ClusterModel in the
system namespace) and a *record* Secret in the system namespace holding the token's sha256, the
expiry, the size limit and the staging repository. The gateway writes the upload's progress
and, once, the committed blob into the record; the controller reads the record from its cache.

Issuing never reads a user Secret — the controller may create and delete Secrets in user
namespaces, not read them (docs/security.md) — and is idempotent all the same: the user
Secret is created first, the record second, the status last.

- user Secret created now → the record gets its token's hash (created, or rewritten);
- user Secret exists (409) and the record too → an earlier run finished both: both are kept,
  no second token;
- user Secret exists but no record → an earlier run stopped between the two; nobody can use
  or know that token (the status never named it), so the Secret is replaced.

``close`` ends a session: the staging blob is unlinked from its repository, then the user
Secret and the record are deleted.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from api import upload
from api.protocol import (
    ANNOTATION_OWNER_NAME,
    ANNOTATION_OWNER_NAMESPACE,
    LABEL_OWNER_KIND,
    LABEL_OWNER_UID,
)
from api.upload import SessionRecord, UploadOwner, UploadProgress
from controller import status
from controller.caches import Caches
from controller.config import Config
from controller.errors import Conflict, RegistryError
from controller.kube import SECRETS, KubeApi
from controller.naming import ObjectKey

JSON = dict[str, Any]
log = structlog.get_logger("uploads")


class BlobStore(Protocol):
    """The registry as the end of a session needs it (``controller.registry.RegistryCleaner``)."""

    def delete_blob(self, repository: str, digest: str) -> bool:
        """Unlinks the blob from ``repository``; ``False`` when it was not there."""
        ...


@dataclass(frozen=True)
class Issued:
    """Where the user finds the session: what ``status.upload`` says."""

    secret_name: str
    secret_namespace: str
    expires_at: dt.datetime


RATE_FRESH_SECONDS = 30.0
"""A rate the gateway wrote longer ago is not shown as current: the client may have stopped."""


@dataclass(frozen=True)
class ProgressView:
    """What the status shows of an upload in flight."""

    message: str
    percent: int | None
    """Of the declared length; ``None`` when none was declared."""
    stale_in: float | None
    """Seconds until the rate shown goes stale (and the message changes); ``None``: no rate."""


def progress_view(progress: UploadProgress, now: dt.datetime) -> ProgressView:
    age = (now - progress.updated_at).total_seconds()
    fresh = 0 <= age < RATE_FRESH_SECONDS and progress.bytes_per_second > 0
    rate = progress.bytes_per_second if fresh else None
    message = status.upload_progress_message(progress.offset, progress.declared_size, rate)
    total = progress.declared_size
    percent = progress.offset * 100 // total if total else None
    return ProgressView(message, percent, RATE_FRESH_SECONDS - age if fresh else None)


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _owner_reference(key: ObjectKey, obj: JSON) -> list[JSON]:
    """The object owns its Secrets where Kubernetes allows it (same namespace, or a
    cluster-scoped owner), so the garbage collector removes them even without the finalizer."""
    return [
        {
            "apiVersion": obj["apiVersion"],
            "kind": key.kind,
            "name": key.name,
            "uid": obj["metadata"]["uid"],
            "blockOwnerDeletion": False,
        }
    ]


def user_secret(key: ObjectKey, obj: JSON, session: str, config: Config, token: str) -> JSON:
    """The Secret the user reads: ``url``, ``inClusterURL``, ``token``."""
    settings = config.upload
    in_cluster = upload.session_url(settings.in_cluster_url, session)
    url = (
        upload.session_url(settings.external_url, session) if settings.external_url else in_cluster
    )
    return {
        "metadata": {
            "name": session,
            "labels": {
                upload.MANAGED_BY_LABEL: upload.MANAGED_BY,
                LABEL_OWNER_KIND: key.kind,
                LABEL_OWNER_UID: obj["metadata"]["uid"],
            },
            "ownerReferences": _owner_reference(key, obj),
        },
        "type": "Opaque",
        "data": {
            upload.KEY_URL: _b64(url),
            upload.KEY_IN_CLUSTER_URL: _b64(in_cluster),
            upload.KEY_TOKEN: _b64(token),
        },
    }


def record_secret(key: ObjectKey, obj: JSON, record: SessionRecord) -> JSON:
    """The record Secret; its labels and annotations name the owner, so the controller's
    Secret informer maps a change to the owner's key without reading the JSON."""
    meta: JSON = {
        "name": upload.record_name(record.session),
        "labels": {
            upload.MANAGED_BY_LABEL: upload.MANAGED_BY,
            upload.LABEL_UPLOAD_SESSION: record.session,
            LABEL_OWNER_KIND: key.kind,
            LABEL_OWNER_UID: obj["metadata"]["uid"],
        },
        "annotations": {ANNOTATION_OWNER_NAMESPACE: key.namespace, ANNOTATION_OWNER_NAME: key.name},
    }
    if key.kind == "ClusterModel":
        meta["ownerReferences"] = _owner_reference(key, obj)
    return {"metadata": meta, "type": "Opaque", "data": {upload.RECORD_KEY: _b64(record.to_json())}}


def read_record(secret: JSON) -> SessionRecord:
    """The record a record Secret holds; ``InvalidRecord`` when it holds none."""
    raw = str((secret.get("data") or {}).get(upload.RECORD_KEY, ""))
    if len(raw) > upload.MAX_RECORD_BYTES * 2:  # base64 of a record over its bound
        raise upload.InvalidRecord(f"the session record is {len(raw)} bytes of base64, too large")
    try:
        return upload.parse_record(base64.b64decode(raw, validate=True))
    except binascii.Error:
        raise upload.InvalidRecord("the session record is not base64") from None


class UploadSessions:
    def __init__(
        self, kube: KubeApi, caches: Caches, config: Config, registry: BlobStore | None
    ) -> None:
        self._kube = kube
        self._caches = caches
        self._config = config
        self._registry = registry

    def secret_namespace(self, key: ObjectKey) -> str:
        return key.namespace or self._config.system_namespace

    def record(self, session: str) -> SessionRecord | None:
        """The session's record as the cache has it; ``None`` when there is none (yet) or it
        is unreadable (logged: only the gateway and the controller write it)."""
        system = self._config.system_namespace
        secret = self._caches.upload_record(system, upload.record_name(session))
        if secret is None:
            return None
        try:
            return read_record(secret)
        except upload.InvalidRecord as error:
            log.warning("unreadable upload session record", session=session, error=str(error))
            return None

    # ---- issue ----------------------------------------------------------------------------------

    def issue(self, key: ObjectKey, obj: JSON, session: str, now: dt.datetime) -> Issued:
        """Creates the session's Secrets, or adopts them (module doc)."""
        where = self.secret_namespace(key)
        token = upload.new_token(session)
        fresh = self._create_user_secret(key, obj, session, token)
        system = self._config.system_namespace
        existing = self._kube.get(SECRETS, upload.record_name(session), system)
        if not fresh and existing is None:
            log.info("replacing an upload Secret without a record", secret=f"{where}/{session}")
            self._kube.delete(SECRETS, session, where)
            if not self._create_user_secret(key, obj, session, token):
                raise Conflict(409, "AlreadyExists", f"Secret {where}/{session} came back")
            fresh = True
        if fresh:
            record = self._new_record(key, obj, session, token, now)
            self._write_record(key, obj, record, existing)
        else:
            assert existing is not None
            record = read_record(existing)
        return Issued(session, where, record.expires_at)

    def _create_user_secret(self, key: ObjectKey, obj: JSON, session: str, token: str) -> bool:
        """``False`` when it exists already (409)."""
        body = user_secret(key, obj, session, self._config, token)
        try:
            self._kube.create(SECRETS, body, self.secret_namespace(key))
        except Conflict:
            return False
        return True

    def _new_record(
        self, key: ObjectKey, obj: JSON, session: str, token: str, now: dt.datetime
    ) -> SessionRecord:
        settings = self._config.upload
        return SessionRecord(
            session=session,
            owner=UploadOwner(
                kind=key.kind, namespace=key.namespace, name=key.name, uid=obj["metadata"]["uid"]
            ),
            token_sha256=upload.token_sha256(token),
            expires_at=now + dt.timedelta(seconds=settings.session_ttl_seconds),
            size_limit_bytes=settings.size_limit_bytes,
            staging_repository=upload.staging_repository(self._config.registry.prefix, session),
        )

    def _write_record(
        self, key: ObjectKey, obj: JSON, record: SessionRecord, existing: JSON | None
    ) -> None:
        """Creates the record, or rewrites one left by an earlier token (compare-and-swap on
        its resourceVersion: a concurrent change raises ``Conflict``, the reconcile runs
        again)."""
        body = record_secret(key, obj, record)
        system = self._config.system_namespace
        if existing is None:
            self._kube.create(SECRETS, body, system)
            return
        # A merge patch (the Role has no `update` of Secrets) guarded by the resourceVersion.
        patch = {
            "metadata": {
                "labels": body["metadata"]["labels"],
                "annotations": body["metadata"]["annotations"],
                "resourceVersion": existing["metadata"]["resourceVersion"],
            },
            "data": body["data"],
        }
        self._kube.merge_patch(SECRETS, body["metadata"]["name"], patch, system)

    # ---- close ----------------------------------------------------------------------------------

    def close(self, key: ObjectKey, obj: JSON, *, strict: bool) -> str | None:
        """Ends every session of the object: staging blob, user Secret, record. A registry
        error is raised when ``strict``; otherwise the blob stays, and what went wrong is
        returned (the caller warns)."""
        uid, system = obj["metadata"]["uid"], self._config.system_namespace
        where = self.secret_namespace(key)
        records = [
            r
            for r in self._caches.upload_records.items()
            if (r["metadata"].get("labels") or {}).get(LABEL_OWNER_UID) == uid
        ]
        sessions = {
            (r["metadata"].get("labels") or {}).get(upload.LABEL_UPLOAD_SESSION, "")
            for r in records
        }
        named = ((obj.get("status") or {}).get("upload") or {}).get("secretName")
        problem = None
        for secret in records:
            try:
                self._unlink_blob(secret)
            except RegistryError as error:
                if strict:
                    raise
                problem = f"the staging blob of {secret['metadata']['name']} stays: {error}"
        for session in sorted({*sessions, named} - {"", None}):
            self._kube.delete(SECRETS, str(session), where)
        for secret in records:
            self._kube.delete(SECRETS, secret["metadata"]["name"], system)
        return problem

    def _unlink_blob(self, secret: JSON) -> None:
        try:
            record = read_record(secret)
        except upload.InvalidRecord:
            return  # no digest to delete; the registry's GC has the last word
        if record.committed is not None and self._registry is not None:
            repository, digest = record.staging_repository, record.committed.digest
            if self._registry.delete_blob(repository, digest):
                log.info("staging blob deleted", repository=repository, digest=digest)
