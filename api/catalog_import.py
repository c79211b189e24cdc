"""The catalog import between the controller and the worker, written once (docs/catalog.md).

- **Worker source**: ``catalog+oci://<grant registry>/<repository>@sha256:<hex>``
  (``catalog_worker_source``, parsed back by ``parse_catalog_worker_source``): the remote
  artifact the preparation Job copies by digest. It names no credentials.
- **Grant file**: the per-Job Secret in the system namespace holds ``GrantFile`` as JSON under
  ``GRANT_KEY`` (and the catalog's CA under ``CA_KEY`` when the source has one); the Job mounts
  it and names the file in ``AI_MODELS_CATALOG_GRANT_FILE``. Besides the grant itself it carries
  what renewing it takes (the catalog URL and token): a grant lives minutes, a copy may take
  longer. The file is untrusted on read (``parse_grant_file`` bounds it).

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from api.catalog_protocol import (
    DIGEST_PATTERN,
    MAX_TOKEN_LENGTH,
    REGISTRY_HOST_PATTERN,
    REPOSITORY_PATH_PATTERN,
    EntryName,
    EntryVersion,
    Grant,
)
from api.meta import parse_bounded

WORKER_SOURCE_SCHEME: Final = "catalog+oci"
GRANT_KEY: Final = "grant.json"
CA_KEY: Final = "ca.crt"
MAX_GRANT_FILE_BYTES: Final = 64 * 1024
_SOURCE = re.compile(
    rf"^{re.escape(WORKER_SOURCE_SCHEME)}://(?P<registry>[^/@?#]+)/(?P<repository>[^@?#]+)"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
_HOST = re.compile(REGISTRY_HOST_PATTERN)
_PATH = re.compile(REPOSITORY_PATH_PATTERN)


class InvalidCatalogSource(ValueError):  # noqa: N818 - what the string is
    """The string is not ``catalog+oci://<host>/<repository>@sha256:<hex>``."""


class InvalidGrantFile(ValueError):  # noqa: N818 - what the file is
    """The mounted grant file is missing its fields, too large or not JSON."""


@dataclass(frozen=True)
class CatalogWorkerSource:
    registry_host: str
    repository: str
    digest: str


def catalog_worker_source(registry_host: str, repository: str, digest: str) -> str:
    return f"{WORKER_SOURCE_SCHEME}://{registry_host}/{repository}@{digest}"


def parse_catalog_worker_source(spec: str) -> CatalogWorkerSource:
    found = _SOURCE.match(spec)
    if found is None:
        raise InvalidCatalogSource(
            f"{spec[:300]!r} is not {WORKER_SOURCE_SCHEME}://<host>/<repository>@sha256:<hex>"
        )
    host, repository = found["registry"], found["repository"]
    if not _HOST.match(host) or not _PATH.match(repository):
        raise InvalidCatalogSource(f"{spec[:300]!r}: the registry host or repository is invalid")
    return CatalogWorkerSource(host, repository, found["digest"])


Token = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH)]


class GrantFile(BaseModel):
    """What the preparation Job's grant Secret holds (camelCase on the wire; secrets never in a
    repr)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    registry: Annotated[str, StringConstraints(max_length=261, pattern=REGISTRY_HOST_PATTERN)]
    repository: Annotated[str, StringConstraints(max_length=255, pattern=REPOSITORY_PATH_PATTERN)]
    token: Annotated[Token, Field(repr=False)]
    expires_at: Annotated[AwareDatetime, Field(alias="expiresAt")]
    catalog_url: Annotated[str, Field(alias="catalogURL", pattern=r"^https://[^\s?#@]+$")]
    catalog_token: Annotated[Token, Field(alias="catalogToken", repr=False)]
    ca_file: Annotated[str | None, Field(alias="caFile", max_length=4096)] = None
    """Relative: next to the grant file (the Secret's ``CA_KEY``)."""
    name: EntryName
    version: EntryVersion
    digest: Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]
    source_name: Annotated[str | None, Field(alias="sourceName", max_length=253)] = None
    """The ModelCatalogSource that resolved the entry (the result's provenance mirrors it)."""
    catalog_revision: Annotated[str | None, Field(alias="catalogRevision", max_length=128)] = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def renewed(self, grant: Grant) -> GrantFile:
        """The same file with a new grant's token and expiry (the repository must not move)."""
        return self.model_copy(update={"token": grant.token, "expires_at": grant.expires_at})


def parse_grant_file(data: bytes) -> GrantFile:
    return parse_bounded(
        GrantFile,
        data,
        limit=MAX_GRANT_FILE_BYTES,
        what="the grant file",
        invalid=InvalidGrantFile,
        top="the document",
        detail="type",  # the message never quotes the input: it holds tokens
    )
