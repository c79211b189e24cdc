"""The import of a ``spec.source.catalog`` Model: resolution, the grant, the Job's source.

``CatalogImports.resolve`` names the entry against the last good catalogs in memory
(``catalogs.CatalogStore``); anything but one active entry is a Pending reason
(``CatalogSourceNotReady``, ``CatalogSourceAmbiguous``, ``CatalogEntryNotFound``,
``CatalogVersionAmbiguous``), rechecked whenever a source's catalog changes. An entry becomes
a ``JobSource`` whose grant is asked only once the Job has a slot (a grant lives minutes): the
source's credentials are read from the secrets namespace (``catalog_reconciler.
source_credentials``), ``POST /v1/grants`` answers with the registry and token, and the Job gets
``catalog+oci://<grant registry>/<repository>@<digest>`` as its source and the grant file
(``api.catalog_import.GrantFile``, with the catalog URL, token and CA the worker needs to renew
it) as the data of its per-Job Secret in the system namespace — never in an argument, an env
value, a status or an Event.

``provenance`` is ``status.source`` as frozen at import: the source, the entry's name and
version, the catalog revision that resolved it, and the remote digest.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api import catalog_import
from api.catalog_protocol import Grant
from controller.caches import Store
from controller.catalog_client import CatalogClient, ca_bundle_file
from controller.catalog_reconciler import source_credentials
from controller.catalogs import CatalogStore, Entry, Resolution
from controller.dispatch import GrantedSource, JobSource
from controller.errors import CASecretInvalid, CatalogUnreachable
from controller.kube import KubeApi

JSON = dict[str, Any]
GrantClient = Callable[[str, str, Path | None], Any]
"""``(url, token, ca_file)`` → an object with ``grant(name, version, digest) -> Grant``."""


def provenance(found: Entry) -> JSON:
    """``status.source`` of a catalog import, frozen when its Job is created."""
    entry = found.entry
    return {
        "resolvedType": "Catalog",
        "resolvedRevision": entry.digest,
        "catalog": {
            "sourceName": found.source,
            "name": entry.name,
            "version": entry.version,
            "catalogRevision": found.revision,
            "remoteDigest": entry.digest,
        },
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class CatalogImports:
    def __init__(
        self,
        kube: KubeApi,
        sources: Store,
        store: CatalogStore,
        secrets_namespace: str,
        *,
        client: GrantClient = CatalogClient,
        ca_dir: Path | None = None,
    ) -> None:
        self._kube = kube
        self._sources = sources
        self._store = store
        self._namespace = secrets_namespace
        self._client = client
        self._ca_dir = ca_dir

    def resolve(self, ref: JSON) -> Resolution:
        """The entry ``spec.source.catalog`` names, or why there is none."""
        return self._store.resolve(ref.get("sourceName"), ref["name"], ref.get("version"))

    def job_source(self, found: Entry) -> JobSource:
        entry = found.entry
        description = (
            f"{entry.name} version {entry.version} ({entry.digest}) from ModelCatalogSource "
            f"{found.source}"
        )
        return JobSource(
            url="", mount_from=(), description=description, grant=lambda: self._grant(found)
        )

    def _grant(self, found: Entry) -> GrantedSource:
        """Asks the source's catalog for a grant; the Job's source and its Secret's data."""
        source = self._sources.get(f"/{found.source}")
        if source is None:
            raise CatalogUnreachable(f"ModelCatalogSource {found.source} no longer exists")
        credentials = source_credentials(self._kube, self._namespace, source["spec"])
        ca_file = None
        if credentials.ca_pem is not None:
            try:
                ca_file = ca_bundle_file(credentials.ca_pem, self._ca_dir)
            except ValueError as error:
                raise CASecretInvalid("caSecretName: ca.crt is not PEM certificates") from error
        entry = found.entry
        client = self._client(credentials.url, credentials.token, ca_file)
        grant: Grant = client.grant(entry.name, entry.version, entry.digest)
        document = catalog_import.GrantFile(
            registry=grant.registry,
            repository=grant.repository,
            token=grant.token,
            expires_at=grant.expires_at,
            catalog_url=credentials.url,
            catalog_token=credentials.token,
            ca_file=catalog_import.CA_KEY if credentials.ca_pem is not None else None,
            name=entry.name,
            version=entry.version,
            digest=entry.digest,
            source_name=found.source,
            catalog_revision=found.revision,
        )
        data = {catalog_import.GRANT_KEY: _b64(document.to_json().encode())}
        if credentials.ca_pem is not None:
            data[catalog_import.CA_KEY] = _b64(credentials.ca_pem)
        url = catalog_import.catalog_worker_source(grant.registry, grant.repository, entry.digest)
        return GrantedSource(url, data)
