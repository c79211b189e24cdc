"""The upload protocol, written once: the controller issues sessions, the gateway serves them, the
CLI uses them and the worker fetches what was uploaded. docs/upload.md tells the whole story.

- **Session**: ``upload-<uid>[-<retry suffix>]`` (``session_name``), its token (``new_token``;
  only ``token_sha256`` of it is stored), the user Secret's keys (``KEY_*``) and the
  record Secret (``record_name``, ``RECORD_KEY``, ``LABEL_UPLOAD_SESSION``) holding a
  ``SessionRecord`` as JSON. The record is untrusted on read (``parse_record`` bounds it).
- **HTTP**: the paths (``session_url``), the headers (``HEADER_*``), the error codes
  (``ErrorCode``, ``ERROR_STATUS``) and the error body (``ErrorBody``).
- **Formats**: the accepted filename suffixes (``upload_format``; ``.tgz`` is ``tar.gz``).
- **Worker source**: ``upload+oci://<host>/<repository>@sha256:<hex>?filename=<name>``
  (``worker_source``, parsed back by ``parse_worker_source``).

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal, get_args
from urllib.parse import parse_qsl, quote, urlsplit

from pydantic import Field, StrictInt

from api.meta import ApiModel, parse_bounded
from api.protocol import LABEL_UPLOAD_SESSION as LABEL_UPLOAD_SESSION
from api.protocol import attempt_suffix

# ---- the session -----------------------------------------------------------------------------

SESSION_PREFIX: Final = "upload-"
RECORD_SUFFIX: Final = "-state"
RECORD_KEY: Final = "session.json"
"""The record Secret's only key: ``SessionRecord`` as JSON."""
KEY_URL: Final = "url"
"""The user Secret's URL of the session: external when configured, else in-cluster."""
KEY_IN_CLUSTER_URL: Final = "inClusterURL"
KEY_TOKEN: Final = "token"  # noqa: S105 - a key name, not a token
USER_SECRET_KEYS: Final = (KEY_URL, KEY_IN_CLUSTER_URL, KEY_TOKEN)
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "ai-models"

TOKEN_RANDOM_BYTES: Final = 32
"""256 bits: ``secrets.token_urlsafe`` of this many bytes follows the session name."""
MAX_TOKEN_LENGTH: Final = 256
MAX_RECORD_BYTES: Final = 16 * 1024
MAX_FILENAME_BYTES: Final = 255
MAX_LOCATION_LENGTH: Final = 4096

API_PREFIX: Final = "/v1/uploads"
COMMIT_PATH: Final = "commit"


def session_name(uid: str, retry: str | None) -> str:
    """``upload-<uid>[-<8 hex of sha256(retry)>]``: the suffix rule of the Job names."""
    return f"{SESSION_PREFIX}{uid}{attempt_suffix(retry)}"


def record_name(session: str) -> str:
    """The record Secret in the system namespace."""
    return f"{session}{RECORD_SUFFIX}"


def staging_repository(prefix: str, session: str) -> str:
    """Where the gateway streams the bytes: ``<prefix>/upload/<session>``."""
    return f"{prefix}/upload/{session}"


def session_url(base: str, session: str) -> str:
    """``<base>/v1/uploads/<session>``; a trailing slash of the base is ignored."""
    return f"{base.rstrip('/')}{API_PREFIX}/{session}"


def new_token(session: str) -> str:
    """``<session>.<256 random bits>``: the gateway finds the session from the part before '.'."""
    return f"{session}.{secrets.token_urlsafe(TOKEN_RANDOM_BYTES)}"


def token_sha256(token: str) -> str:
    """What the record stores; compare with ``hmac.compare_digest``."""
    return hashlib.sha256(token.encode()).hexdigest()


def session_of_token(token: str) -> str | None:
    """The session a token names; None when it cannot be one of ours."""
    session, dot, rest = token.partition(".")
    if not dot or not rest or len(token) > MAX_TOKEN_LENGTH:
        return None
    return session if session.startswith(SESSION_PREFIX) else None


# ---- the record ------------------------------------------------------------------------------

Kind = Literal["Model", "ClusterModel"]
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Filename = Annotated[str, Field(min_length=1, max_length=MAX_FILENAME_BYTES)]
Size = Annotated[StrictInt, Field(ge=0)]


class InvalidRecord(ValueError):  # noqa: N818 - what the record is
    """A record Secret that is missing its key, too large, or not a ``SessionRecord``."""


class UploadOwner(ApiModel):
    kind: Kind
    namespace: str = ""
    """Empty for a ClusterModel."""
    name: str
    uid: str


class UploadProgress(ApiModel):
    """The upload in flight, as the gateway last wrote it."""

    filename: Filename
    declared_size: Size | None = None
    location: Annotated[str, Field(max_length=MAX_LOCATION_LENGTH)]
    """The registry's upload URL (path and query) of the current registry upload session."""
    offset: Size = 0
    bytes_per_second: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    updated_at: datetime


class UploadCommitted(ApiModel):
    """The finished blob in the staging repository; set once."""

    digest: Digest
    size: Size
    filename: Filename


class SessionRecord(ApiModel):
    """The session's state in the API, shared by the controller and the gateway."""

    session: str
    owner: UploadOwner
    token_sha256: Annotated[str, Field(alias="tokenSHA256", pattern=r"^[0-9a-f]{64}$")]
    expires_at: datetime
    size_limit_bytes: Size
    staging_repository: str
    upload: UploadProgress | None = None
    committed: UploadCommitted | None = None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def to_json(self) -> str:
        # ``upload`` and ``committed`` are written as null, not left out: the shape stays fixed.
        return self.model_dump_json(by_alias=True)


def parse_record(text: str | bytes) -> SessionRecord:
    """A record's ``session.json``, bounded before it is decoded; ``InvalidRecord`` saying where
    it is wrong otherwise."""
    return parse_bounded(
        SessionRecord,
        text,
        limit=MAX_RECORD_BYTES,
        what="the session record",
        invalid=InvalidRecord,
        top="the top",
    )


# ---- HTTP ------------------------------------------------------------------------------------

HEADER_UPLOAD_OFFSET: Final = "Upload-Offset"
HEADER_UPLOAD_LENGTH: Final = "Upload-Length"
HEADER_UPLOAD_FILENAME: Final = "Upload-Filename"

ErrorCode = Literal[
    "Unauthorized",
    "UploadExpired",
    "AlreadyCommitted",
    "TooLarge",
    "TooManyAttempts",
    "BadRequest",
    "UnsupportedFormat",
    "RegistryUnavailable",
    "NoUpload",
    "OffsetMismatch",
    "DigestMismatch",
]
ERROR_CODES: Final = frozenset(get_args(ErrorCode))
ERROR_STATUS: Final[dict[ErrorCode, int]] = {
    "Unauthorized": 401,
    "UploadExpired": 410,
    "AlreadyCommitted": 409,
    "TooLarge": 413,
    "TooManyAttempts": 429,
    "BadRequest": 400,
    "UnsupportedFormat": 400,
    "RegistryUnavailable": 503,
    "NoUpload": 404,
    "OffsetMismatch": 409,
    "DigestMismatch": 400,
}
"""The HTTP status of each error code."""


class ErrorBody(ApiModel):
    """Every error response's JSON body."""

    code: ErrorCode
    message: str


class CommitRequest(ApiModel):
    """``POST /v1/uploads/<session>/commit``."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Size


class CommitResult(ApiModel):
    """The 201 body of a commit and of a whole-file ``PUT``."""

    digest: Digest
    size: Size
    filename: Filename


# ---- formats ---------------------------------------------------------------------------------

UploadFormat = Literal["gguf", "safetensors", "tar", "tar.gz", "tar.zst", "zip"]
ACCEPTED_SUFFIXES: Final[tuple[str, ...]] = (
    ".gguf",
    ".safetensors",
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.zst",
    ".zip",
)
_FORMAT_OF_SUFFIX: Final[dict[str, UploadFormat]] = {
    ".gguf": "gguf",
    ".safetensors": "safetensors",
    ".tar": "tar",
    ".tar.gz": "tar.gz",
    ".tgz": "tar.gz",
    ".tar.zst": "tar.zst",
    ".zip": "zip",
}
_UNSAFE_FILENAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def is_safe_filename(name: str) -> bool:
    """One path component of at most 255 bytes, no control characters, not ``.``/``..``."""
    return (
        0 < len(name.encode()) <= MAX_FILENAME_BYTES
        and name not in {".", ".."}
        and not _UNSAFE_FILENAME.search(name)
    )


def upload_format(name: str) -> UploadFormat | None:
    """The format a filename's suffix names (case-insensitive); None when not accepted."""
    lower = name.lower()
    # Longest suffix first: ".tar.gz" before ".gz" would not matter, but ".tar" must not win.
    for suffix in sorted(_FORMAT_OF_SUFFIX, key=len, reverse=True):
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return _FORMAT_OF_SUFFIX[suffix]
    return None


# ---- the worker's source ---------------------------------------------------------------------

WORKER_SOURCE_SCHEME: Final = "upload+oci"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


class InvalidUploadSource(ValueError):  # noqa: N818 - what the argument is
    """The worker's source argument is not an ``upload+oci://`` reference."""


@dataclass(frozen=True)
class UploadSource:
    """A committed upload, as the worker fetches it."""

    registry_host: str
    repository: str
    digest: str
    filename: str

    @property
    def format(self) -> UploadFormat:
        found = upload_format(self.filename)
        assert found is not None  # parse_worker_source refused any other name
        return found


def worker_source(registry_host: str, repository: str, digest: str, filename: str) -> str:
    """``upload+oci://<host>/<repository>@<digest>?filename=<urlencoded name>``."""
    return (
        f"{WORKER_SOURCE_SCHEME}://{registry_host}/{repository}@{digest}"
        f"?filename={quote(filename, safe='')}"
    )


def parse_worker_source(spec: str) -> UploadSource:
    """``worker_source`` read back, every part validated; ``InvalidUploadSource`` otherwise."""
    parts = urlsplit(spec)
    if parts.scheme != WORKER_SOURCE_SCHEME or not parts.netloc or parts.fragment:
        raise InvalidUploadSource(f"not an {WORKER_SOURCE_SCHEME}:// source: {spec!r}")
    path, at, digest = parts.path.lstrip("/").rpartition("@")
    if not at or not _DIGEST.match(digest) or not _REPOSITORY.match(path):
        raise InvalidUploadSource(f"the upload source names no repository@digest: {spec!r}")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InvalidUploadSource(f"the upload source has a malformed query: {spec!r}") from None
    if [k for k, _ in query] != ["filename"]:
        raise InvalidUploadSource(f"the upload source needs exactly one filename: {spec!r}")
    filename = query[0][1]
    if not is_safe_filename(filename) or upload_format(filename) is None:
        raise InvalidUploadSource(f"the uploaded file name is not accepted: {filename!r}")
    return UploadSource(parts.netloc, path, digest, filename)
