"""A threading HTTP server whose connections get a deadline and, when a TLS context is set, their
handshake in their own thread: a slow or silent client holds up nobody.

Shared by the admission webhook (always TLS) and the delivery endpoint (TLS optional).
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


def server_context() -> ssl.SSLContext:
    """A server-side TLS context, TLS 1.2 at least; load the certificate into it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
