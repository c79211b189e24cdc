"""A catalog import: the grant, its renewal, and the remote registry read with it.

The preparation Job names the artifact as ``catalog+oci://<grant registry>/<repository>@<digest>``
and mounts the grant file (``api.catalog_import.GrantFile``; its path in
``AI_MODELS_CATALOG_GRANT_FILE``). ``CatalogRemote`` reads the remote registry with the grant's
bearer token, kept in a private file that the shared registry client re-reads on each request;
when the registry answers 401 (a grant lives minutes, a copy may take longer) ``CatalogGrants``
asks the catalog for a new one (``POST /v1/grants`` with the catalog token, the catalog's CA,
redirects refused so the token goes nowhere else), rewrites the file, and the read goes on from
the byte where it stopped. A 401 right after a renewal is ``CatalogUnauthorized``.

``import_from_catalog`` runs the copy (``worker.oci.copy``) and gives the worker's result: the
resolved metadata from the manifest's ``ai.deckhouse.io/resolved`` annotation (validated; when it
is missing or invalid the metadata stays unknown and a note says so), the source ``Catalog`` at
the remote digest. Tokens never appear in a message, a log line or an argument.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import requests
import structlog
from pydantic import ValidationError

from api.catalog_import import GrantFile, InvalidGrantFile, parse_grant_file
from api.catalog_protocol import (
    CONTENT_TYPE_JSON,
    GRANTS_PATH,
    MAX_BODY_BYTES,
    Grant,
    GrantRequest,
)
from api.model import CatalogProvenance, ResolvedMetadata, SourceStatus
from api.protocol import MANIFEST_RESOLVED_ANNOTATION, WorkerResult
from oci import errors
from oci.registry import RegistryClient, RegistrySettings
from worker.errors import (
    CatalogDigestMismatch,
    CatalogUnauthorized,
    InvalidSource,
    RegistryRejected,
    SourceNotFound,
    SourceUnavailable,
    WorkerError,
)
from worker.oci.copy import CopiedArtifact, copy_artifact, manifest_annotations
from worker.oci.modelpack import MANIFEST_MEDIA_TYPE
from worker.oci.publish import ProgressSink
from worker.oci.target import ArtifactTarget
from worker.sources.spec import CatalogSpec

_T = TypeVar("_T")
_TIMEOUTS = (10.0, 60.0)
log = structlog.get_logger("catalog")


def load_grant_file(path: Path) -> tuple[GrantFile, Path | None]:
    """The mounted grant file and the CA file it names (next to it); ``InvalidSource`` when it
    is missing or malformed."""
    try:
        with path.open("rb") as file:
            data = file.read(1 << 20)
    except OSError as error:
        raise InvalidSource(
            f"the catalog grant file {path} cannot be read ({error.strerror})"
        ) from None
    try:
        grant = parse_grant_file(data)
    except InvalidGrantFile as error:
        raise InvalidSource(f"{path}: {error}") from None
    ca = path.parent / grant.ca_file if grant.ca_file else None
    return grant, ca


class CatalogGrants:
    """The current grant of one import; ``renew`` exchanges it for a new one. Thread-safe."""

    def __init__(
        self, grant: GrantFile, ca_file: Path | None, session: requests.Session | None = None
    ) -> None:
        self._grant = grant
        self._ca = str(ca_file) if ca_file is not None else True
        self._session = session or requests.Session()
        self._session.trust_env = False  # no proxy, no REQUESTS_CA_BUNDLE: the CA given
        self._lock = threading.Lock()
        self.renewals = 0

    @property
    def current(self) -> GrantFile:
        with self._lock:
            return self._grant

    def renew(self, stale: GrantFile) -> GrantFile:
        """A new grant, unless another thread already replaced ``stale``."""
        with self._lock:
            if self._grant is not stale:
                return self._grant
            fresh = self._request(stale)
            if (fresh.registry, fresh.repository) != (stale.registry, stale.repository):
                raise CatalogUnauthorized(
                    f"the catalog renewed the grant for {stale.name} {stale.version} on another "
                    f"repository ({fresh.registry}/{fresh.repository}); refusing to follow it"
                )
            self._grant = stale.renewed(fresh)
            self.renewals += 1
            log.info("catalog grant renewed", name=stale.name, expires=str(fresh.expires_at))
            return self._grant

    def _request(self, grant: GrantFile) -> Grant:
        url = grant.catalog_url.rstrip("/") + GRANTS_PATH
        body = GrantRequest(name=grant.name, version=grant.version, digest=grant.digest)
        try:
            response = self._session.post(
                url, json=body.to_wire(), timeout=_TIMEOUTS, verify=self._ca, stream=True,
                allow_redirects=False,
                headers={"Authorization": f"Bearer {grant.catalog_token}",
                         "Accept": CONTENT_TYPE_JSON},
            )  # fmt: skip
        except requests.exceptions.SSLError:
            raise CatalogUnauthorized(
                f"the catalog {grant.catalog_url}: TLS verification failed"
            ) from None
        except requests.RequestException as error:
            raise SourceUnavailable(
                f"the catalog {grant.catalog_url} cannot be reached ({type(error).__name__})"
            ) from None
        with response:
            data = response.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
            return _grant_of(response.status_code, data, grant)


def _grant_of(status: int, data: bytes, grant: GrantFile) -> Grant:
    what = f"grant request to {grant.catalog_url} for {grant.name} {grant.version}"
    if status == 201 and len(data) <= MAX_BODY_BYTES:
        try:
            return Grant.model_validate_json(data)
        except ValidationError:
            raise SourceUnavailable(f"{what}: the answer is not a grant") from None
    if status in (401, 403):
        raise CatalogUnauthorized(f"{what}: refused ({status}); check the catalog credentials")
    if status == 404:
        raise SourceNotFound(f"{what}: the catalog no longer has this entry")
    if status == 409:
        raise CatalogDigestMismatch(f"{what}: the entry's digest is no longer {grant.digest}")
    if 300 <= status < 400:
        raise CatalogUnauthorized(f"{what}: answered a redirect ({status}); refused")
    raise SourceUnavailable(f"{what}: answered {status}")


class CatalogRemote:
    """The grant's registry read API, with renewal on 401 (a ``RemoteArtifact``)."""

    def __init__(
        self,
        spec: CatalogSpec,
        grants: CatalogGrants,
        ca_file: Path | None,
        token_dir: Path,
        settings: RegistrySettings | None = None,
    ) -> None:
        self._spec = spec
        self._grants = grants
        self._token_file = token_dir / "grant-token"
        self._written: GrantFile | None = None
        self._write_token(grants.current)
        base = settings or RegistrySettings()
        self._client = RegistryClient(
            spec.registry_host,
            ca_file=ca_file,
            settings=RegistrySettings(
                attempts=base.attempts, chunk_size=base.chunk_size,
                bearer_token_file=self._token_file,
            ),
        )  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def manifest(self, digest: str) -> bytes:
        spec = self._spec

        def fetch() -> bytes:
            return self._client.get_manifest(spec.repository, digest, (MANIFEST_MEDIA_TYPE,)).data

        try:
            return self._renewing(fetch)
        except errors.BadResponse as error:
            if "hashes to" in error.message:  # oci's check of a manifest fetched by digest
                raise CatalogDigestMismatch(f"{spec.url}: {error.message}") from None
            raise _remote_error(error, spec.url) from error

    def blob_chunks(self, digest: str, offset: int) -> Iterator[bytes]:
        """Reads from ``offset``; after a renewal, from the first byte not yet yielded."""
        position, renewed = offset, False
        while True:
            grant = self._grants.current
            try:
                for piece in self._client.blob_chunks(self._spec.repository, digest, position):
                    position, renewed = position + len(piece), False
                    yield piece
                return
            except errors.Unauthorized as error:
                renewed = self._renew_once(error, grant, renewed)
            except errors.OciError as error:
                raise _remote_error(error, f"{self._spec.url} blob {digest}") from error

    def _renewing(self, call: Callable[[], _T]) -> _T:
        renewed = False
        while True:
            grant = self._grants.current
            try:
                return call()
            except errors.Unauthorized as error:
                renewed = self._renew_once(error, grant, renewed)
            except errors.BadResponse:
                raise
            except errors.OciError as error:
                raise _remote_error(error, self._spec.url) from error

    def _renew_once(self, error: errors.Unauthorized, grant: GrantFile, renewed: bool) -> bool:
        if renewed or error.status != 401:
            raise CatalogUnauthorized(
                f"{self._spec.url}: the catalog's registry refused the grant"
                f"{' just renewed' if renewed else ''} ({error.status or 'no answer'})"
            ) from None
        self._write_token(self._grants.renew(grant))
        return True

    def _write_token(self, grant: GrantFile) -> None:
        if grant is self._written:
            return
        partial = self._token_file.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(grant.token)
        partial.replace(self._token_file)
        self._written = grant


def _remote_error(error: errors.OciError, where: str) -> WorkerError:
    """The catalog registry's failures, told apart from the local registry's."""
    if isinstance(error, errors.Unavailable):
        return SourceUnavailable(f"{where}: the catalog's registry: {error.message}")
    if isinstance(error, errors.Refused) and error.status == 404:
        return SourceNotFound(f"{where}: the catalog's registry does not have it")
    return RegistryRejected(f"{where}: the catalog's registry: {error.message}")


def resolved_from(manifest: bytes, where: str) -> tuple[ResolvedMetadata, str | None]:
    """The ``ai.deckhouse.io/resolved`` annotation validated; empty metadata and a note when
    it is missing or not valid (the controller then reports MetadataPartial)."""
    text = manifest_annotations(manifest, where).get(MANIFEST_RESOLVED_ANNOTATION)
    if text is None:
        return ResolvedMetadata(), f"the artifact has no {MANIFEST_RESOLVED_ANNOTATION} annotation"
    try:
        return ResolvedMetadata.model_validate_json(text), None
    except ValidationError as error:
        first = error.errors()[0]
        at = ".".join(str(p) for p in first["loc"]) or "the document"
        return ResolvedMetadata(), (
            f"the artifact's {MANIFEST_RESOLVED_ANNOTATION} annotation is invalid at {at} "
            f"({first['type']}); its metadata stays unknown"
        )


def import_from_catalog(
    spec: CatalogSpec,
    grant_path: Path,
    target: ArtifactTarget,
    *,
    progress: Callable[[int], ProgressSink],
    workspace: Path | None = None,
    settings: RegistrySettings | None = None,
) -> tuple[WorkerResult, CopiedArtifact]:
    """Copies the artifact into ``target`` and gives the worker's result."""
    grant, ca_file = load_grant_file(grant_path)
    if grant.digest != spec.digest or (grant.registry, grant.repository) != (
        spec.registry_host,
        spec.repository,
    ):
        raise InvalidSource(f"{spec.url}: the grant file is for another artifact")
    token_dir = Path(tempfile.mkdtemp(prefix="catalog-grant-", dir=workspace))
    remote = CatalogRemote(spec, CatalogGrants(grant, ca_file), ca_file, token_dir, settings)
    try:
        copied = copy_artifact(remote, spec.digest, target, progress=progress, where=spec.url)
    finally:
        remote.close()
        shutil.rmtree(token_dir, ignore_errors=True)
    resolved, note = resolved_from(copied.manifest, spec.url)
    if note is not None:
        log.warning("catalog artifact metadata", note=note)
    provenance = CatalogProvenance(
        source_name=grant.source_name, name=grant.name, version=grant.version,
        catalog_revision=grant.catalog_revision, remote_digest=spec.digest,
    )  # fmt: skip
    source = SourceStatus(
        catalog=provenance, resolved_type="Catalog", resolved_revision=spec.digest
    )
    result = WorkerResult(artifact=copied.published.to_status(), resolved=resolved, source=source)
    return result, copied
