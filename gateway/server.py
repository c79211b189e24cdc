"""The gateway's HTTP server: the upload API of docs/upload.md, nothing else.

    PUT   /v1/uploads/<s>?filename=<name>[&sha256=<hex>]  the whole file → 201 CommitResult
    POST  /v1/uploads/<s>?filename=<name>  [Upload-Length]  a new upload → 201, Upload-Offset: 0
    HEAD  /v1/uploads/<s>                                   200 Upload-Offset (the registry's)
    PATCH /v1/uploads/<s>  Upload-Offset | Content-Range    append → 204 Upload-Offset
    POST  /v1/uploads/<s>/commit  {"sha256","size"}         finish → 201 CommitResult
    GET   /healthz                                          no token (the kubelet's probes)

Every other answer is an ``api.upload.ErrorBody``. The token is checked before anything else of
the request is looked at. Each request is logged once (session, method, status, body bytes) —
never its token or Authorization header. When a client's connection ends, or a request fails,
this replica's latest position of the session's upload is written to the record at once
(``progress``), so the client's next request may land on any replica.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import structlog

from api.upload import HEADER_UPLOAD_FILENAME, HEADER_UPLOAD_LENGTH, HEADER_UPLOAD_OFFSET
from controller.errors import KubeError
from controller.httpserver import ConnectionServer
from gateway import wire
from gateway.auth import TokenCheck
from gateway.body import Body
from gateway.errors import ClientGone, Refusal, bad_request
from gateway.progress import ProgressBook
from gateway.records import RecordGone
from gateway.uploads import Uploads as Operations
from oci.errors import OciError

log = structlog.get_logger("gateway")
CONNECTION_TIMEOUT_SECONDS = 120.0
_Answer = tuple[int, dict[str, str], bytes]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GatewayServer

    def setup(self) -> None:
        super().setup()
        self._sessions: set[str] = set()

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            for session in self._sessions:  # the client may come back to another replica
                self.server.book.flush(session)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one structured line per request instead (_serve)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        with self.server.in_flight():
            self._serve_one(method)

    def _serve_one(self, method: str) -> None:
        started = time.monotonic()
        self._body: Body | None = None
        session, status, code = "-", 0, ""
        try:
            parts = urlsplit(self.path)
            if method == "GET" and parts.path == "/healthz":
                status = self._send(200, {}, b"ok\n", "text/plain")
                return
            target = wire.target(parts.path)
            if target is None:
                raise bad_request(f"not an upload path: {parts.path[:100]!r}")
            session = target.session
            record = self.server.auth.record(session, self.headers.get("Authorization"))
            self._sessions.add(session)
            status = self._send(*self._dispatch(method, target, record, parts.query))
        except ClientGone as error:
            status, self.close_connection = 499, True
            log.info("client gone", session=session, method=method, error=str(error))
        except Exception as error:  # noqa: BLE001 - every failure becomes an answer
            refusal = _refusal_of(error, session)
            status, code = self._refuse(refusal), refusal.code
        finally:
            if status >= 400 and session in self._sessions:
                self.server.book.flush(session)
            received = self._body.received if self._body is not None else 0
            log.info("request", session=session, method=method, status=status, code=code,
                     bytes=received, seconds=round(time.monotonic() - started, 3))  # fmt: skip

    def _dispatch(self, method: str, target: wire.Target, record: Any, query: str) -> _Answer:
        ops = self.server.operations
        if method == "HEAD" and not target.commit:
            standing = ops.status(record)
            headers = {HEADER_UPLOAD_OFFSET: str(standing.offset),
                       HEADER_UPLOAD_FILENAME: standing.progress.filename}  # fmt: skip
            if standing.progress.declared_size is not None:
                headers[HEADER_UPLOAD_LENGTH] = str(standing.progress.declared_size)
            return 200, headers, b""
        if method == "PATCH" and not target.commit:
            body = self._open_body()
            claim = wire.claim(
                self.headers.get(HEADER_UPLOAD_OFFSET), self.headers.get("Content-Range"),
                body.length,
            )  # fmt: skip
            offset = ops.append(record, claim, body)
            return 204, {HEADER_UPLOAD_OFFSET: str(offset)}, b""
        if method == "POST" and target.commit:
            body = self._open_body()
            body.limit, body.too_large = wire.MAX_COMMIT_BODY, "the commit body is too large"
            request = wire.commit_request(b"".join(body.chunks(wire.MAX_COMMIT_BODY)))
            return 201, {}, ops.commit(record, request).model_dump_json().encode()
        params = wire.query(query)
        if method == "POST":
            name = wire.filename(params)
            declared = wire.size_header(
                self.headers.get(HEADER_UPLOAD_LENGTH), HEADER_UPLOAD_LENGTH
            )
            ops.start(record, name, declared)
            return 201, {HEADER_UPLOAD_OFFSET: "0"}, b""
        if method == "PUT" and not target.commit:
            name, sha256 = wire.filename(params), wire.sha256_param(params)
            result = ops.put(record, name, sha256, self._open_body())
            return 201, {}, result.model_dump_json().encode()
        raise bad_request(f"{method} is not an operation of {self.path.split('?')[0][:100]}")

    def _open_body(self) -> Body:
        length = wire.body_length(
            self.headers.get("Content-Length"), self.headers.get("Transfer-Encoding")
        )
        self._body = Body(self.rfile, length)
        return self._body

    def _send(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        media_type: str = "application/json",
    ) -> int:
        self.send_response(status)
        if body or status not in (204,):
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.server.stopping.is_set() and not self.close_connection:
            self.close_connection = True  # draining: the client's next request goes elsewhere
            self.send_header("Connection", "close")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _refuse(self, refusal: Refusal) -> int:
        body = self._body
        if self.command in ("PUT", "PATCH", "POST") and (body is None or not body.complete):
            self.close_connection = True  # the rest of the body is not read
        headers = dict(refusal.headers)
        if refusal.code == "Unauthorized":
            headers["WWW-Authenticate"] = 'Bearer realm="ai-models-upload"'
        if self.close_connection:
            headers["Connection"] = "close"
        try:
            return self._send(refusal.status, headers, refusal.body())
        except OSError:
            return refusal.status


def _refusal_of(error: Exception, session: str) -> Refusal:
    if isinstance(error, Refusal):
        return error
    if isinstance(error, RecordGone):
        return Refusal("NoUpload", "this session's record is gone")
    if isinstance(error, KubeError):
        log.warning("API server unavailable", session=session, error=str(error))
        return Refusal("RegistryUnavailable", "the session store (the API server) is unavailable")
    if isinstance(error, OciError):
        log.warning("registry failed", session=session, error=error.message)
        return Refusal("RegistryUnavailable", f"the registry failed: {error.message[:300]}")
    log.exception("unexpected failure", session=session)
    return Refusal("RegistryUnavailable", f"the gateway failed: {type(error).__name__}")


class GatewayServer(ConnectionServer):
    def __init__(
        self, address: str, port: int, auth: TokenCheck, operations: Operations, book: ProgressBook
    ) -> None:
        self.auth = auth
        self.operations = operations
        self.book = book
        self.stopping = threading.Event()
        self._active = 0
        self._idle = threading.Condition()
        super().__init__(
            (address, port), _Handler, timeout_seconds=CONNECTION_TIMEOUT_SECONDS, name="gateway"
        )

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Stops accepting, lets the requests in flight finish (a registry PATCH cut short
        would lose the upload) for up to ``timeout`` seconds; True when none is left."""
        self.stopping.set()
        self.shutdown()
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)
