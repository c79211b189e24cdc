"""The client of catalog protocol v1 (docs/catalog-protocol.md): list a catalog, ask a grant.

One ``CatalogClient`` per source and refresh, holding the source's URL, token and CA file.
Every answer goes through ``raise_for_catalog_status``, the one table from a response to the
errors of ``controller.errors`` (the server's ``code`` wins over the bare status). Untrusted
bytes are bounded: each body is streamed and cut at ``MAX_BODY_BYTES`` (16 MiB), a listing
at ``MAX_PAGES`` pages, a page's read at ``BODY_DEADLINE_SECONDS``.

TLS and credentials: the session ignores the environment (``trust_env=False``: the process's
``REQUESTS_CA_BUNDLE`` or proxy variables would otherwise replace the source's CA or route the
token elsewhere) and every request passes ``verify=`` itself. Redirects are never followed
(a 3xx is ``CatalogMalformed``), so the bearer token reaches no host but the catalog's.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from pydantic import BaseModel, ValidationError

from api.catalog_protocol import (
    BEARER_PREFIX,
    CATALOG_PATH,
    ERROR_DIGEST_MISMATCH,
    ERROR_ENTRY_NOT_FOUND,
    ERROR_REVISION_CHANGED,
    GRANTS_PATH,
    HEADER_AUTHORIZATION,
    HEADER_IF_NONE_MATCH,
    HEADER_RETRY_AFTER,
    MAX_BODY_BYTES,
    MAX_TOKEN_LENGTH,
    QUERY_PAGE_SIZE,
    QUERY_PAGE_TOKEN,
    CatalogEntry,
    CatalogPage,
    ErrorBody,
    Grant,
    GrantRequest,
)
from controller.errors import (
    CatalogBusy,
    CatalogDigestMismatch,
    CatalogEntryNotFound,
    CatalogError,
    CatalogMalformed,
    CatalogTLSError,
    CatalogUnauthorized,
    CatalogUnreachable,
)

PAGE_SIZE = 500
MAX_PAGES = 200
"""100,000 entries at the default page size: more is refused as malformed."""
MAX_RESTARTS = 3
"""Listings restarted after ``409 RevisionChanged`` before the refresh gives up (transient)."""
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 30.0
BODY_DEADLINE_SECONDS = 120.0
"""A body trickled slower than this in total is abandoned (a read timeout is per chunk)."""
MAX_RETRY_AFTER_SECONDS = 3600.0
DEFAULT_RETRY_AFTER_SECONDS = 30.0
MAX_ERROR_BODY = 64 << 10
_READ_PIECE = 64 << 10

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Catalog:
    """A complete listing: every page of one revision, ``(name, version)`` unique."""

    revision: str
    entries: tuple[CatalogEntry, ...]

    @property
    def active_count(self) -> int:
        return sum(1 for e in self.entries if e.active)


class _RevisionChanged(Exception):  # noqa: N818 - a signal inside the listing loop
    pass


def ca_bundle_file(pem: bytes, directory: Path | None = None) -> Path:
    """A file with ``pem`` (checked to be PEM certificates: ``ValueError`` otherwise), named by
    its digest so a refresh reuses it. CA certificates are public: a temp file is fine."""
    try:
        ssl.create_default_context(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as error:
        raise ValueError("not PEM certificates") from error
    where = directory or Path(tempfile.gettempdir()) / "ai-models-catalog-ca"
    where.mkdir(mode=0o700, exist_ok=True)
    path = where / f"{hashlib.sha256(pem).hexdigest()[:32]}.pem"
    if not path.exists():
        partial = path.with_suffix(".tmp")
        partial.write_bytes(pem)
        partial.replace(path)
    return path


def valid_token(token: str) -> bool:
    """A bearer token that fits one header: printable ASCII, no spaces, bounded."""
    return 0 < len(token) <= MAX_TOKEN_LENGTH and all(33 <= ord(c) <= 126 for c in token)


class CatalogClient:
    def __init__(
        self,
        url: str,
        token: str,
        ca_file: Path | None = None,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = url.rstrip("/")
        self._token = token
        self._verify: bool | str = str(ca_file) if ca_file is not None else True
        self._session = session or requests.Session()
        self._session.trust_env = False
        self._clock = clock

    def __repr__(self) -> str:  # never the token
        return f"CatalogClient({self._base!r})"

    # ---- the two calls -------------------------------------------------------------------------

    def fetch(self, revision: str | None = None) -> Catalog | None:
        """The whole catalog; ``None`` when ``revision`` is still current (304)."""
        for _ in range(MAX_RESTARTS + 1):
            try:
                return self._list(revision)
            except _RevisionChanged:
                continue
        raise CatalogUnreachable(
            f"{self._base}: the catalog changed {MAX_RESTARTS + 1} times during one listing"
        )

    def grant(self, name: str, version: str, digest: str) -> Grant:
        """Short-lived pull credentials for one entry's artifact (``POST /v1/grants``)."""
        body = GrantRequest(name=name, version=version, digest=digest).to_wire()
        response = self._request("POST", GRANTS_PATH, json=body)
        with response:
            raise_for_catalog_status(response, f"POST {self._base}{GRANTS_PATH}")
            if response.status_code != 201:
                raise CatalogMalformed(
                    f"POST {self._base}{GRANTS_PATH}: expected 201, got {response.status_code}"
                )
            return _model(Grant, self._body(response), f"{self._base}{GRANTS_PATH}")

    # ---- listing -------------------------------------------------------------------------------

    def _list(self, revision: str | None) -> Catalog | None:
        entries: list[CatalogEntry] = []
        seen: set[tuple[str, str]] = set()
        first: str | None = None
        token: str | None = None
        for number in range(MAX_PAGES):
            page = self._page(token, revision if number == 0 else None)
            if page is None:
                return None
            if first is None:
                first = page.revision
            elif page.revision != first:
                raise _RevisionChanged  # a server that moved on without saying 409
            for entry in page.entries:
                if (entry.name, entry.version) in seen:
                    raise CatalogMalformed(
                        f"{self._base}: entry {entry.name} version {entry.version!r} "
                        f"appears twice in revision {first}"
                    )
                seen.add((entry.name, entry.version))
                entries.append(entry)
            token = page.next_page_token
            if token is None:
                return Catalog(first, tuple(entries))
        raise CatalogMalformed(f"{self._base}: the listing exceeds {MAX_PAGES} pages")

    def _page(self, token: str | None, revision: str | None) -> CatalogPage | None:
        params = {QUERY_PAGE_SIZE: str(PAGE_SIZE)}
        if token is not None:
            params[QUERY_PAGE_TOKEN] = token
        headers = {HEADER_IF_NONE_MATCH: f'"{revision}"'} if revision is not None else {}
        what = f"GET {self._base}{CATALOG_PATH}"
        response = self._request("GET", CATALOG_PATH, params=params, headers=headers)
        with response:
            if response.status_code == 304:
                if revision is None:
                    raise CatalogMalformed(f"{what}: 304 to a request without If-None-Match")
                return None
            try:
                raise_for_catalog_status(response, what)
            except CatalogError as error:
                if error.code == ERROR_REVISION_CHANGED and token is not None:
                    raise _RevisionChanged from error
                raise
            if response.status_code != 200:
                raise CatalogMalformed(f"{what}: expected 200, got {response.status_code}")
            return _model(CatalogPage, self._body(response), f"{self._base}{CATALOG_PATH}")

    # ---- transport -----------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {
            **kwargs.pop("headers", {}),
            HEADER_AUTHORIZATION: f"{BEARER_PREFIX}{self._token}",
            "Accept": "application/json",
        }
        try:
            return self._session.request(
                method,
                f"{self._base}{path}",
                headers=headers,
                verify=self._verify,
                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
        except requests.exceptions.SSLError as error:
            raise CatalogTLSError(
                f"{method} {self._base}{path}: the certificate does not verify against "
                f"{'caSecretName' if self._verify is not True else 'the system CAs'} "
                f"({_short(error)})"
            ) from error
        except requests.RequestException as error:
            raise CatalogUnreachable(f"{method} {self._base}{path}: {_short(error)}") from error

    def _body(self, response: requests.Response) -> bytes:
        """The body, read in pieces and cut at ``MAX_BODY_BYTES`` and the body deadline."""
        what = f"{response.request.method} {self._base}"
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise CatalogMalformed(f"{what}: body of {declared} bytes exceeds {MAX_BODY_BYTES}")
        deadline = self._clock() + BODY_DEADLINE_SECONDS
        chunks: list[bytes] = []
        total = 0
        try:
            for piece in response.iter_content(_READ_PIECE):
                total += len(piece)
                if total > MAX_BODY_BYTES:
                    raise CatalogMalformed(f"{what}: body exceeds {MAX_BODY_BYTES} bytes")
                if self._clock() > deadline:
                    raise CatalogUnreachable(
                        f"{what}: body not read within {BODY_DEADLINE_SECONDS:.0f}s"
                    )
                chunks.append(piece)
        except requests.RequestException as error:
            raise CatalogUnreachable(f"{what}: body interrupted: {_short(error)}") from error
        return b"".join(chunks)


# ---- answers → errors -----------------------------------------------------------------------


def _error_body(response: requests.Response) -> ErrorBody | None:
    try:
        body = next(response.iter_content(MAX_ERROR_BODY), b"")
        return ErrorBody.model_validate(json.loads(body))
    except (requests.RequestException, StopIteration, ValueError, RecursionError):
        return None


def retry_after(response: requests.Response) -> float:
    """Seconds ``Retry-After`` asks for (the protocol sends seconds), bounded; a default when
    absent or unreadable."""
    value = response.headers.get(HEADER_RETRY_AFTER, "")
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
    if seconds != seconds:  # NaN
        return DEFAULT_RETRY_AFTER_SECONDS
    return max(0.0, min(MAX_RETRY_AFTER_SECONDS, seconds))


def raise_for_catalog_status(response: requests.Response, what: str) -> None:
    """Raises the typed error of a non-2xx answer to ``what`` (``"GET https://…/v1/catalog"``).
    The server's ``code`` wins over the status; ``code`` is kept on the error as an attribute."""
    status = response.status_code
    if 200 <= status < 300 or status == 304:
        return
    if 300 <= status < 400:
        raise CatalogMalformed(f"{what}: redirect refused (answered {status}; not followed)")
    body = _error_body(response)
    code = body.code if body is not None else ""
    detail = f"{what}: answered {status}" + (f" {code}: {body.message[:300]}" if body else "")
    error: CatalogError
    if status in (401, 403) or code in ("Unauthorized", "Forbidden"):
        error = CatalogUnauthorized(f"{detail}; check the token in credentialsSecretName")
    elif status in (429, 503) or code in ("TooManyRequests", "Unavailable"):
        error = CatalogBusy(detail, retry_after(response))
    elif code == ERROR_ENTRY_NOT_FOUND:
        error = CatalogEntryNotFound(detail)
    elif code == ERROR_DIGEST_MISMATCH:
        error = CatalogDigestMismatch(detail)
    elif code == ERROR_REVISION_CHANGED or status >= 500:
        error = CatalogUnreachable(detail)
    else:  # 400, 404 of the path itself, 405...: not a protocol v1 catalog at this URL
        error = CatalogMalformed(f"{detail}; is the URL a protocol v1 catalog?")
    error.code = code
    raise error


def _model(model: type[M], body: bytes, where: str) -> M:
    """``body`` parsed as ``model``; ``CatalogMalformed`` naming the first problems (never
    the offending values: they are remote input)."""
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, RecursionError) as error:
        if isinstance(error, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in error.errors(include_url=False, include_input=False)[:3]
            )
            raise CatalogMalformed(f"{where}: not protocol v1: {problems}") from None
        raise CatalogMalformed(f"{where}: the body is not JSON") from None


def _short(error: BaseException) -> str:
    return str(error)[:300]
