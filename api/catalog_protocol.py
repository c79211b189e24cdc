"""Catalog protocol v1 (docs/catalog-protocol.md): the bodies, headers, codes and keys that the
catalog server, the ModelCatalogSource refresh and the catalog import share, written once.

- **Bodies**: ``CatalogPage`` of ``CatalogEntry`` (``GET /v1/catalog``), ``GrantRequest`` and
  ``Grant`` (``POST /v1/grants``), ``ErrorBody`` (every error). camelCase on the wire. Responses
  tolerate unknown fields (a v1 server may add optional ones); requests are closed.
- **Bounds**: page sizes, the most bytes a client reads of one body, the grant's lifetime.
- **Keys** a ClusterModel carries to be published, spelled under the API group.

Pure: no I/O. The JSON Schemas in docs/schemas/ are generated from these models
(``python -m catalog.schemas``) and a unit test keeps them equal.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_serializer,
)
from pydantic.alias_generators import to_camel

from api.meta import DNS_SUBDOMAIN_PATTERN, GROUP
from api.model import ResolvedMetadata

# ---- version, paths, headers -----------------------------------------------------------------

CATALOG_API_VERSION: Final = "catalog.ai.deckhouse.io/v1"
CATALOG_PATH: Final = "/v1/catalog"
GRANTS_PATH: Final = "/v1/grants"
REGISTRY_PREFIX: Final = "/v2/"
"""The server's registry read API for grant holders: ``/v2/<repository>/{manifests,blobs}/…``."""

HEADER_AUTHORIZATION: Final = "Authorization"
HEADER_ETAG: Final = "ETag"
HEADER_IF_NONE_MATCH: Final = "If-None-Match"
HEADER_RETRY_AFTER: Final = "Retry-After"
HEADER_WWW_AUTHENTICATE: Final = "WWW-Authenticate"
HEADER_DOCKER_CONTENT_DIGEST: Final = "Docker-Content-Digest"
QUERY_PAGE_SIZE: Final = "pageSize"
QUERY_PAGE_TOKEN: Final = "pageToken"  # noqa: S105 - a parameter name
BEARER_PREFIX: Final = "Bearer "
INVALID_TOKEN_CHALLENGE: Final = 'Bearer error="invalid_token"'  # noqa: S105 - a challenge
"""``WWW-Authenticate`` of a 401 for an expired or bad grant: the importer asks a new grant."""

CONTENT_TYPE_JSON: Final = "application/json"
ARTIFACT_TYPE: Final = "application/vnd.cncf.model.manifest.v1+json"

# ---- bounds ----------------------------------------------------------------------------------

MIN_PAGE_SIZE: Final = 1
MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 500
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
"""The most a client reads of one catalog page or grant body."""
MAX_REQUEST_BODY_BYTES: Final = 16 * 1024
"""The most the server reads of a request body (a ``GrantRequest`` is far smaller)."""
MAX_PAGE_TOKEN_LENGTH: Final = 512
MAX_TOKEN_LENGTH: Final = 4096
"""Client and grant tokens: longer ``Authorization`` values are refused unread."""
DEFAULT_GRANT_TTL_SECONDS: Final = 600

# ---- publishing keys on a ClusterModel -------------------------------------------------------

LABEL_CATALOG_PUBLISH: Final = f"{GROUP}/catalog"
CATALOG_PUBLISH_VALUE: Final = "publish"
PUBLISH_SELECTOR: Final = f"{LABEL_CATALOG_PUBLISH}={CATALOG_PUBLISH_VALUE}"
"""The default label selector of the ClusterModels the server publishes."""
ANNOTATION_CATALOG_VERSION: Final = f"{GROUP}/catalog-version"
DEFAULT_ENTRY_VERSION: Final = "1"

# ---- error codes -----------------------------------------------------------------------------

ErrorCode = Literal[
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "LengthRequired",
    "PayloadTooLarge",
    "EntryNotFound",
    "DigestMismatch",
    "RevisionChanged",
    "TooManyRequests",
    "Unavailable",
    "Internal",
]
ERROR_BAD_REQUEST: Final = "BadRequest"
ERROR_UNAUTHORIZED: Final = "Unauthorized"
ERROR_FORBIDDEN: Final = "Forbidden"
ERROR_NOT_FOUND: Final = "NotFound"
ERROR_METHOD_NOT_ALLOWED: Final = "MethodNotAllowed"
ERROR_LENGTH_REQUIRED: Final = "LengthRequired"
ERROR_PAYLOAD_TOO_LARGE: Final = "PayloadTooLarge"
ERROR_ENTRY_NOT_FOUND: Final = "EntryNotFound"
ERROR_DIGEST_MISMATCH: Final = "DigestMismatch"
ERROR_REVISION_CHANGED: Final = "RevisionChanged"
ERROR_TOO_MANY_REQUESTS: Final = "TooManyRequests"
ERROR_UNAVAILABLE: Final = "Unavailable"
ERROR_INTERNAL: Final = "Internal"

# ---- field types -----------------------------------------------------------------------------

DIGEST_PATTERN: Final = r"^sha256:[0-9a-f]{64}$"
REVISION_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
REGISTRY_HOST_PATTERN: Final = (
    r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
    r"(:[0-9]{1,5})?$"
)
REPOSITORY_PATH_PATTERN: Final = (
    r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
)
REPOSITORY_PATTERN: Final = REGISTRY_HOST_PATTERN[:-1] + "/" + REPOSITORY_PATH_PATTERN[1:]

Digest = Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]
Revision = Annotated[str, StringConstraints(max_length=128, pattern=REVISION_PATTERN)]
EntryName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
]
EntryVersion = Annotated[str, StringConstraints(min_length=1, max_length=128)]
PageToken = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PAGE_TOKEN_LENGTH)]


class _Wire(BaseModel):
    """camelCase on the wire; responses accept unknown fields so v1 may grow optional ones."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


class CatalogEntry(_Wire):
    """One published model version; ``(name, version)`` is unique within a revision."""

    name: EntryName
    version: EntryVersion
    active: bool
    repository: Annotated[str, StringConstraints(max_length=512, pattern=REPOSITORY_PATTERN)]
    """``<host[:port]>/<path>``: the OCI repository a grant for this entry opens."""
    digest: Digest
    artifact_type: Literal["application/vnd.cncf.model.manifest.v1+json"] = ARTIFACT_TYPE
    size_bytes: Annotated[int, Field(ge=0)]
    resolved: ResolvedMetadata

    @field_serializer("resolved")
    def _resolved_wire(self, resolved: ResolvedMetadata) -> dict[str, Any]:
        # In the shape of status.resolved: unknown values are left out, never null.
        return resolved.to_wire()


class CatalogPage(_Wire):
    """``GET /v1/catalog``: one page; every page of one listing carries the same revision."""

    api_version: Literal["catalog.ai.deckhouse.io/v1"] = CATALOG_API_VERSION
    revision: Revision
    entries: Annotated[list[CatalogEntry], Field(max_length=MAX_PAGE_SIZE)]
    next_page_token: PageToken | None = None


class GrantRequest(_Wire):
    """``POST /v1/grants``: read access to one entry's artifact."""

    model_config = ConfigDict(extra="forbid")

    name: EntryName
    version: EntryVersion
    digest: Digest


class Grant(_Wire):
    """Short-lived, read-only pull credentials for one repository and one manifest digest (and
    the blobs that manifest lists), on the registry read API at ``registry``."""

    registry: Annotated[str, StringConstraints(max_length=261, pattern=REGISTRY_HOST_PATTERN)]
    repository: Annotated[
        str, StringConstraints(min_length=1, max_length=255, pattern=REPOSITORY_PATH_PATTERN)
    ]
    token: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH)]
    expires_at: AwareDatetime


class ErrorBody(_Wire):
    """Every error response: a stable code and a message for people."""

    code: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z]+$")]
    message: Annotated[str, StringConstraints(max_length=1024)] = ""
