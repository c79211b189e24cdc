"""A threading HTTP server whose connections get a deadline and, when a TLS context is set, their
handshake in their own thread: a slow or silent client holds up nobody.

Shared by the admission webhook (always TLS), the delivery endpoint (TLS optional), the upload
gateway and the catalog server; so is the life of such a server as a process
(``serve_until_signalled``): JSON logs, a bad configuration exits 2, SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import structlog

log = structlog.get_logger("httpserver")


class ConnectionServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        timeout_seconds: float,
        name: str,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.context = context
        self._timeout_seconds = timeout_seconds
        self._name = name
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection: socket.socket = request
        connection.settimeout(self._timeout_seconds)
        if self.context is None:
            super().finish_request(connection, client_address)
            return
        try:
            wrapped = self.context.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError) as error:
            log.debug("TLS handshake failed", client=str(client_address), error=str(error))
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=self._name, daemon=True)
        thread.start()
        return thread


def server_context(cert_chain: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """A server-side TLS context, TLS 1.2 at least, with ``cert_chain`` (certificate, key)
    loaded when given (else the caller loads one, as the webhook does on each rotation)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_chain is not None:
        context.load_cert_chain(*cert_chain)
    return context


class Serving(Protocol):
    """What ``serve_until_signalled`` needs of a server (``ConnectionServer`` has it)."""

    def start(self) -> object: ...

    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


S = TypeVar("S", bound=Serving)


def configure_json_logging() -> None:
    """structlog as one JSON object per line on stderr, with level and UTC time."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def shut_down(server: Serving) -> None:
    """The default stop: no new requests, then the socket closed."""
    server.shutdown()
    server.server_close()


def serve_until_signalled(
    prog: str,
    build: Callable[[], S],
    errors: tuple[type[Exception], ...],
    started: Callable[[S], None],
    stop: Callable[[S], None] = shut_down,
) -> int:
    """A server's process: ``build`` it (one of ``errors``: ``<prog>: <error>`` on stderr and
    exit code 2), start it, call ``started`` (its log line, its helper threads), serve until
    SIGTERM or SIGINT, then ``stop`` it; exit code 0."""
    configure_json_logging()
    try:
        server = build()
    except errors as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    signalled = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signalled.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    started(server)
    signalled.wait()
    stop(server)
    return 0
