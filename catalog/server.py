"""The catalog server's HTTPS endpoint (docs/catalog-protocol.md):

    GET  /v1/catalog[?pageSize=&pageToken=]   client token; ETag / If-None-Match → 304
    POST /v1/grants                            client token; 201 ``Grant``
    GET|HEAD /v2/<repository>/{manifests,blobs}/<digest>   grant token (``readapi``)
    GET  /healthz                              no token (the kubelet's probes)

Every bad token counts against the client's address (``auth.FailureLimiter``); past the limit
the client gets 429 with ``Retry-After`` before any token is looked at. Request bodies are
read only up to ``MAX_REQUEST_BODY_BYTES`` and need a ``Content-Length``. An API server or
registry that fails is 503 with ``Retry-After``. Tokens are never logged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import structlog
from pydantic import ValidationError

from api.catalog_protocol import (
    CATALOG_PATH,
    CONTENT_TYPE_JSON,
    DEFAULT_PAGE_SIZE,
    ERROR_DIGEST_MISMATCH,
    ERROR_ENTRY_NOT_FOUND,
    ERROR_INTERNAL,
    ERROR_LENGTH_REQUIRED,
    ERROR_METHOD_NOT_ALLOWED,
    ERROR_NOT_FOUND,
    ERROR_PAYLOAD_TOO_LARGE,
    ERROR_REVISION_CHANGED,
    ERROR_TOO_MANY_REQUESTS,
    ERROR_UNAVAILABLE,
    GRANTS_PATH,
    MAX_PAGE_SIZE,
    MAX_REQUEST_BODY_BYTES,
    MAX_TOKEN_LENGTH,
    MIN_PAGE_SIZE,
    QUERY_PAGE_SIZE,
    QUERY_PAGE_TOKEN,
    REGISTRY_HOST_PATTERN,
    REGISTRY_PREFIX,
    CatalogPage,
    Grant,
    GrantRequest,
)
from api.meta import first_problem
from catalog.answers import Refusal, bad_request, bearer, unauthorized
from catalog.auth import ClientTokens, FailureLimiter
from catalog.cluster import Models, Upstream
from catalog.grants import ExpiredGrant, GrantClaims, GrantSigner, InvalidGrant
from catalog.listing import BadPageToken, RevisionChanged, page
from catalog.readapi import Target, byte_range, check_scope, cut, parse_target
from controller.errors import KubeError
from controller.httpserver import ConnectionServer, server_context
from oci.errors import OciError, Refused

log = structlog.get_logger("catalog")
CONNECTION_TIMEOUT_SECONDS = 60.0
UNAVAILABLE_RETRY_SECONDS = 5
DRAIN_LIMIT_BYTES = 1 << 20
_HOST = re.compile(REGISTRY_HOST_PATTERN)


@dataclass(frozen=True)
class Parts:
    models: Models
    tokens: ClientTokens
    limiter: FailureLimiter
    signer: GrantSigner
    upstream: Upstream
    public_host: str | None
    """``host[:port]`` clients reach the server at; None: the request's ``Host`` header."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CatalogServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line may carry a page token; refusals are logged below

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        registry_api = path.startswith(REGISTRY_PREFIX) or path == "/v2"
        try:
            if path == "/healthz":
                self._send(200, b"ok\n", "text/plain", method == "HEAD")
            elif registry_api:
                self._registry(path, method)
            elif path in (CATALOG_PATH, GRANTS_PATH):
                expected = "GET" if path == CATALOG_PATH else "POST"
                if method != expected:
                    raise Refusal(405, ERROR_METHOD_NOT_ALLOWED, f"{path} answers {expected} only")
                self._client()
                self._catalog(query) if path == CATALOG_PATH else self._grant()
            else:
                raise Refusal(404, ERROR_NOT_FOUND, f"{path[:200]}: no such endpoint")
        except Refusal as refusal:
            self._refuse(refusal, registry_api, method == "HEAD")
        except (KubeError, OciError) as error:
            self._refuse(self._failure(error, registry_api), registry_api, method == "HEAD")
        except Exception:  # a bug: answered 500 and logged, never a silently dropped connection
            log.exception("request failed", method=method, path=path[:200])
            code = "UNKNOWN" if registry_api else ERROR_INTERNAL
            self._refuse(Refusal(500, code, "internal error"), registry_api, method == "HEAD")

    def _failure(self, error: Exception, registry_api: bool) -> Refusal:
        if isinstance(error, Refused) and error.status == 404:
            code = "BLOB_UNKNOWN" if "/blobs/" in self.path else "MANIFEST_UNKNOWN"
            return Refusal(404, code if registry_api else ERROR_NOT_FOUND, str(error))
        log.warning("dependency unavailable", kind=type(error).__name__, error=str(error))
        code = "UNAVAILABLE" if registry_api else ERROR_UNAVAILABLE
        return Refusal(503, code, "unavailable; retry", retry_after=UNAVAILABLE_RETRY_SECONDS)

    # ---- authentication --------------------------------------------------------------------

    def _token(self, grant: bool) -> str:
        client = self.client_address[0]
        wait = self.server.parts.limiter.retry_after(client)
        if wait is not None:
            code = "TOOMANYREQUESTS" if grant else ERROR_TOO_MANY_REQUESTS
            raise Refusal(429, code, "too many bad tokens", retry_after=wait)
        try:
            return bearer(self.headers.get("Authorization", ""), MAX_TOKEN_LENGTH)
        except Refusal as refusal:
            # A missing token is a client that has not authenticated yet, not a guess.
            raise unauthorized(refusal.message, grant) from None

    def _client(self) -> None:
        if not self.server.parts.tokens.valid(self._token(grant=False)):
            self.server.parts.limiter.fail(self.client_address[0])
            log.info("client token refused", client=self.client_address[0])
            raise unauthorized("the client token is not valid")

    def _grant_claims(self) -> GrantClaims:
        try:
            return self.server.parts.signer.verify(self._token(grant=True))
        except ExpiredGrant:
            raise unauthorized("the grant expired; ask for a new one", grant=True) from None
        except InvalidGrant:
            self.server.parts.limiter.fail(self.client_address[0])
            raise unauthorized("the grant token is not valid", grant=True) from None

    def _public_host(self) -> str:
        host = self.server.parts.public_host or self.headers.get("Host") or ""
        if not _HOST.match(host):
            raise bad_request("the Host header is missing or not host[:port]")
        return host

    # ---- /v1 -------------------------------------------------------------------------------

    def _catalog(self, query: str) -> None:
        try:
            params = parse_qs(query, max_num_fields=8)
        except ValueError:
            raise bad_request("too many query parameters") from None
        size_text = params.get(QUERY_PAGE_SIZE, [str(DEFAULT_PAGE_SIZE)])[0]
        if not size_text.isdigit() or not MIN_PAGE_SIZE <= int(size_text) <= MAX_PAGE_SIZE:
            raise bad_request(f"{QUERY_PAGE_SIZE} must be {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}")
        token = params.get(QUERY_PAGE_TOKEN, [None])[0]
        items = self.server.parts.models.items()
        try:
            revision, chosen, following = page(items, int(size_text), token)
        except RevisionChanged as error:
            raise Refusal(409, ERROR_REVISION_CHANGED, str(error)) from None
        except BadPageToken as error:
            raise bad_request(str(error)) from None
        etag = f'"{revision}"'
        tags = _entity_tags(self.headers.get("If-None-Match", ""))
        if etag in tags or "*" in tags:
            self._send(304, b"", CONTENT_TYPE_JSON, True, {"ETag": etag}, length=False)
            return
        host = self._public_host()
        body = CatalogPage(
            revision=revision,
            entries=[i.entry(host) for i in chosen],
            next_page_token=following,
        )
        data = json.dumps(body.to_wire(), separators=(",", ":")).encode()
        headers = {"ETag": etag, "Cache-Control": "no-store"}
        self._send(200, data, CONTENT_TYPE_JSON, False, headers)

    def _grant(self) -> None:
        request = self._request_body()
        items = self.server.parts.models.items()
        found = next(
            (i for i in items if (i.name, i.version) == (request.name, request.version)), None
        )
        if found is None:
            message = f"no entry {request.name} version {request.version}"
            raise Refusal(404, ERROR_ENTRY_NOT_FOUND, message)
        if found.digest != request.digest:
            raise Refusal(409, ERROR_DIGEST_MISMATCH, f"the entry's digest is {found.digest}")
        token, claims = self.server.parts.signer.issue(found.repository, found.digest)
        grant = Grant(
            registry=self._public_host(),
            repository=found.repository,
            token=token,
            expires_at=claims.expires_at,
        )
        log.info("grant issued", name=found.name, version=found.version, digest=found.digest)
        data = json.dumps(grant.to_wire()).encode()
        self._send(201, data, CONTENT_TYPE_JSON, False, {"Cache-Control": "no-store"})

    def _request_body(self) -> GrantRequest:
        length_text = self.headers.get("Content-Length", "")
        if not length_text.isdigit():
            raise Refusal(411, ERROR_LENGTH_REQUIRED, "a Content-Length is required")
        if int(length_text) > MAX_REQUEST_BODY_BYTES:
            self._drain(int(length_text))
            message = f"the body is over {MAX_REQUEST_BODY_BYTES} bytes"
            raise Refusal(413, ERROR_PAYLOAD_TOO_LARGE, message)
        data = self.rfile.read(int(length_text))
        try:
            return GrantRequest.model_validate_json(data)
        except ValidationError as error:
            where, first = first_problem(error, "body")
            raise bad_request(f"the grant request is invalid at {where}: {first['msg']}") from None

    def _drain(self, length: int) -> None:
        """Reads a small oversized body away so that the client gets the 413 rather than a
        reset; a large one is left unread and the connection closed."""
        self.close_connection = True
        if length <= DRAIN_LIMIT_BYTES:
            while length > 0:
                piece = self.rfile.read(min(length, 64 << 10))
                if not piece:
                    return
                length -= len(piece)

    # ---- /v2 -------------------------------------------------------------------------------

    def _registry(self, path: str, method: str) -> None:
        if method not in ("GET", "HEAD"):
            raise Refusal(405, "UNSUPPORTED", "the registry API here is read-only")
        claims = self._grant_claims()
        if path in ("/v2", "/v2/"):
            self._send(200, b"{}", CONTENT_TYPE_JSON, method == "HEAD")
            return
        target = parse_target(path)
        if target is None:
            raise Refusal(404, "NAME_UNKNOWN", "not a manifest or blob path")
        upstream = self.server.parts.upstream
        blobs = None
        if target.what == "blobs" and target.repository == claims.repository:
            blobs = upstream.blobs_of(claims.repository, claims.digest)
        check_scope(claims, target, blobs)
        if target.what == "manifests":
            manifest = upstream.manifest(target.repository, target.digest)
            media_type = manifest.media_type or "application/vnd.oci.image.manifest.v1+json"
            headers = {"Docker-Content-Digest": manifest.digest}
            self._send(200, manifest.data, media_type, method == "HEAD", headers)
            return
        self._blob(target, method == "HEAD")

    def _blob(self, target: Target, head: bool) -> None:
        upstream = self.server.parts.upstream
        size = upstream.blob_size(target.repository, target.digest)
        if size is None:
            raise Refusal(404, "BLOB_UNKNOWN", f"blob {target.digest} is not in the registry")
        span = byte_range(self.headers.get("Range", ""), size)
        first, last = span if span is not None else (0, size - 1)
        headers = {"Docker-Content-Digest": target.digest, "Accept-Ranges": "bytes"}
        if span is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        status, length = (206 if span is not None else 200), max(0, last - first + 1)
        if head or length == 0:
            self._head(status, length, "application/octet-stream", headers)
            return
        chunks = upstream.blob_chunks(target.repository, target.digest, first)
        try:
            first_piece = next(chunks, b"")  # a failure here is still an HTTP error
            self._head(status, length, "application/octet-stream", headers)
            self._stream(first_piece, cut(chunks, length - len(first_piece)), length)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _stream(self, first: bytes, rest: Iterator[bytes], length: int) -> None:
        try:
            self.wfile.write(first[:length])
            for piece in rest:
                self.wfile.write(piece)
        except (OciError, OSError) as error:
            # Cut short: the client sees an incomplete body and its digest check fails.
            log.warning("blob stream aborted", kind=type(error).__name__, error=str(error))
            self.close_connection = True

    # ---- writing ---------------------------------------------------------------------------

    def _head(
        self,
        status: int,
        length: int | None,
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _send(
        self,
        status: int,
        body: bytes,
        media_type: str,
        head: bool,
        headers: dict[str, str] | None = None,
        length: bool = True,
    ) -> None:
        self._head(status, len(body) if length else None, media_type, headers)
        if not head and body:
            self.wfile.write(body)

    def _refuse(self, refusal: Refusal, registry_api: bool, head: bool) -> None:
        if refusal.status >= 500 or refusal.status == 429:
            log.info("refused", status=refusal.status, code=refusal.code)
        self._send(
            refusal.status,
            refusal.body(registry_api),
            CONTENT_TYPE_JSON,
            head,
            refusal.headers(),
        )


def _entity_tags(header: str) -> set[str]:
    """The strong tags of ``If-None-Match`` (weak ones compare equal for a GET, RFC 9110)."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


class CatalogServer(ConnectionServer):
    def __init__(self, address: str, port: int, parts: Parts, tls: tuple[Path, Path]) -> None:
        self.parts = parts
        context = server_context(tls)
        super().__init__(
            (address, port),
            _Handler,
            timeout_seconds=CONNECTION_TIMEOUT_SECONDS,
            name="catalog",
            context=context,
        )
