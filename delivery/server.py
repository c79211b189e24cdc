"""The delivery endpoint's HTTP(S) server: the OCI distribution **read** API, nothing else.

    GET  /v2/                                    200 for a valid pod-bound token, else 401
    GET|HEAD /v2/model/<ns>/<name>/manifests/<digest>
    GET|HEAD /v2/clustermodel/<name>/manifests/<digest>
    GET|HEAD /v2/<same repositories>/blobs/<digest>     (``Range: bytes=<n>-`` → 206)
    GET  /metrics, /healthz                      no token (Prometheus, the kubelet's probes)

Every model request is authorized by ``access.Gatekeeper`` (401 ``UNAUTHORIZED``, 403
``DENIED`` with the reason as the OCI error message). Blobs come through ``cache.BlobStore``;
the first chunk is read before the status line is sent, so an early failure is still an HTTP
error (503: the client retries); a failure after that — a cached blob found corrupt, the
registry gone mid-blob — cuts the connection short, which the client sees as an incomplete body.
TLS, when configured, is done per connection in the connection's own thread (as the webhook).
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.errors import KubeError
from controller.httpserver import ConnectionServer, server_context
from delivery.access import Gatekeeper, Grant
from delivery.authz import Denied, Target, Unauthenticated, parse_path
from delivery.cache import BlobCorrupt, BlobStore, Piece
from delivery.metrics import DeliveryMetrics
from oci.errors import OciError, Refused, Unavailable

log = structlog.get_logger("delivery")
CONNECTION_TIMEOUT_SECONDS = 60.0
MAX_AUTHORIZATION_HEADER = 16 << 10
_RANGE = re.compile(r"bytes=(\d{1,19})-")


class _Refusal(Exception):  # noqa: N818 - an HTTP answer, not a crash
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DeliveryServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is too much on a busy node; refusals are logged below

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def _route(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                self._answer(200, b"ok\n", "text/plain", head)
            elif path == "/metrics":
                body = generate_latest(self.server.metrics.registry)
                self._answer(200, body, CONTENT_TYPE_LATEST, head)
            elif path in ("/v2", "/v2/"):
                self.server.gatekeeper.identify(self._token())
                self._answer(200, b"{}", "application/json", head)
            else:
                target = parse_path(path)
                if target is None:
                    raise _Refusal(404, "NAME_UNKNOWN", f"{path}: not a model of this endpoint")
                self._deliver(target, head)
        except _Refusal as refusal:
            self._refuse(refusal, head)
        except Unauthenticated as error:
            self._refuse(_Refusal(401, "UNAUTHORIZED", str(error)), head)
        except Denied as error:
            log.info("refused", path=path, reason=str(error))
            self._refuse(_Refusal(403, "DENIED", str(error)), head)
        except KubeError as error:
            log.warning("API server unavailable", error=str(error))
            self._refuse(_Refusal(503, "UNAVAILABLE", "the API server is unavailable"), head)
        except Refused as error:
            unknown = "BLOB_UNKNOWN" if "/blobs/" in path else "MANIFEST_UNKNOWN"
            status, code = (404, unknown) if error.status == 404 else (502, "UPSTREAM")
            self._refuse(_Refusal(status, code, str(error)), head)
        except (Unavailable, BlobCorrupt) as error:
            self._refuse(_Refusal(503, "UNAVAILABLE", str(error)), head)
        except OciError as error:
            self._refuse(_Refusal(502, "UPSTREAM", error.message), head)

    def _token(self) -> str:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refusal(
                401, "UNAUTHORIZED", "a bearer token (the pod's projected token) is required"
            )
        if len(header) > MAX_AUTHORIZATION_HEADER:
            raise _Refusal(401, "UNAUTHORIZED", "the bearer token is too large")
        return token.strip()

    def _deliver(self, target: Target, head: bool) -> None:
        server = self.server
        grant = server.gatekeeper.grant(self._token(), target)
        if target.what == "manifests":
            manifest = server.gatekeeper.upstream.manifest(grant.repository, target.digest)
            media_type = manifest.media_type or "application/vnd.oci.image.manifest.v1+json"
            self._answer(200, manifest.data, media_type, head, target.digest)
            return
        self._blob(target, grant, head)

    def _blob(self, target: Target, grant: Grant, head: bool) -> None:
        size = grant.size or 0
        offset = 0
        found = _RANGE.fullmatch(self.headers.get("Range", "").strip())
        if found and 0 < int(found[1]) < size:
            offset = int(found[1])
        elif found and int(found[1]) >= size > 0:
            raise _Refusal(416, "RANGE_INVALID", f"range starts at or past {size} bytes")
        headers = {"Docker-Content-Digest": target.digest, "Accept-Ranges": "bytes"}
        if offset:
            headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
        if head:
            self._status(200, size, "application/octet-stream", headers)
            return
        upstream = self.server.gatekeeper.upstream
        chunks = self.server.store.stream(
            target.digest, size, lambda: upstream.blob_chunks(grant.repository, target.digest),
            offset,
        )  # fmt: skip
        first = next(chunks, b"")  # a failure here is still an HTTP error
        self._status(206 if offset else 200, size - offset, "application/octet-stream", headers)
        self._stream(first, chunks)

    def _stream(self, first: Piece, chunks: Generator[Piece, None, None]) -> None:
        metrics = self.server.metrics
        try:
            piece = first
            while True:
                self.wfile.write(piece)
                metrics.served_bytes.inc(len(piece))
                piece = next(chunks, b"")
                if not piece:
                    return
        except (BlobCorrupt, OciError, OSError) as error:
            # Cut short: the client sees an incomplete body (and its digest check never passes).
            log.warning("blob stream aborted", error=str(error))
            self.close_connection = True
        finally:
            chunks.close()

    def _status(self, status: int, length: int, media_type: str, headers: dict[str, str]) -> None:
        self.server.metrics.requests.labels(str(status)).inc()
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _answer(
        self, status: int, body: bytes, media_type: str, head: bool, digest: str | None = None
    ) -> None:
        headers = {"Docker-Content-Digest": digest} if digest else {}
        self._status(status, len(body), media_type, headers)
        if not head:
            self.wfile.write(body)
            if status == 200 and digest:
                self.server.metrics.served_bytes.inc(len(body))

    def _refuse(self, refusal: _Refusal, head: bool) -> None:
        body = json.dumps({"errors": [{"code": refusal.code, "message": refusal.message}]}).encode()
        headers = {}
        if refusal.status == 401:
            # No realm: the pod's token is the only credential; there is nothing to exchange.
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        self._status(refusal.status, len(body), "application/json", headers)
        if not head:
            self.wfile.write(body)


class DeliveryServer(ConnectionServer):
    def __init__(
        self,
        address: str,
        port: int,
        gatekeeper: Gatekeeper,
        store: BlobStore,
        metrics: DeliveryMetrics,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.gatekeeper = gatekeeper
        self.store = store
        self.metrics = metrics
        context = server_context(tls) if tls is not None else None
        super().__init__(
            (address, port),
            _Handler,
            timeout_seconds=CONNECTION_TIMEOUT_SECONDS,
            name="delivery",
            context=context,
        )
