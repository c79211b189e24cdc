"""The emulated kubelet's log endpoint: what the API server calls for ``kubectl logs``.

For ``pods/log`` the API server connects to the pod's node at its ``InternalIP`` and
``daemonEndpoints.kubeletEndpoint.Port`` and asks ``GET /containerLogs/{ns}/{pod}/{container}``
over HTTPS. This server answers that from the container log the node emulator keeps
(``NodeEmulator.container_log``), with the kubelet's ``tailLines``, ``limitBytes`` and
``follow`` (the file is read until the container ends); ``timestamps``, ``sinceSeconds`` and
``previous`` are accepted and ignored (one log per pod, no timestamps recorded).

It listens on 127.0.0.1 only and, like the test node's kubelet (``tests/ground/node.py``),
takes anonymous requests: the API server of the ground has no kubelet client certificate. The
serving certificate is issued by the control plane's CA for 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tests.ground.certs import KeyPair

LogLookup = Callable[[str, str], tuple[Path, bool]]
"""(namespace, pod) → (log file, whether the container may still write to it); LookupError
for a pod this node never ran."""

_PATH = re.compile(r"^/containerLogs/([^/]+)/([^/]+)/([^/]+)$")
FOLLOW_POLL_SECONDS = 0.2
CHUNK = 64 * 1024


def _tail(data: bytes, lines: int) -> bytes:
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    lookup: LogLookup
    context: ssl.SSLContext

    def setup(self) -> None:
        # The TLS handshake happens here, in the connection's own thread, so that one slow
        # client never holds up the accept loop.
        self.request = self.context.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        return  # the playground's logs are the components'; requests are not recorded

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        match = _PATH.match(url.path)
        if match is None:
            self._reply(404, b"only /containerLogs/{namespace}/{pod}/{container} is served\n")
            return
        namespace, pod = unquote(match.group(1)), unquote(match.group(2))
        try:
            path, running = self.lookup(namespace, pod)
        except LookupError as error:
            self._reply(404, f"{error}\n".encode())
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        data = path.read_bytes()
        size = len(data)
        if "tailLines" in query:
            data = _tail(data, int(query["tailLines"]))
        limit = int(query["limitBytes"]) if "limitBytes" in query else None
        if limit is not None:
            data = data[:limit]
        if query.get("follow") == "true" and running and limit is None:
            self._follow(namespace, pod, path, data, size)
            return
        self._reply(200, data)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _follow(self, namespace: str, pod: str, path: Path, first: bytes, offset: int) -> None:
        """Sends ``first``, then the file from ``offset`` on until the container is done."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(first)
        with path.open("rb") as log:
            log.seek(offset)
            while True:
                data = log.read(CHUNK)
                if data:
                    self._chunk(data)
                    continue
                _, running = self.lookup(namespace, pod)
                if not running:
                    self._chunk(log.read())
                    break
                time.sleep(FOLLOW_POLL_SECONDS)
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()


class KubeletLogServer:
    """The endpoint for one emulated node; ``port`` goes into the Node's ``daemonEndpoints``.

    Created before the emulator (whose Node must name the port), served once ``serve`` gets
    the emulator's lookup."""

    def __init__(self, serving: KeyPair) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(serving.cert, serving.key)
        self._httpd: ThreadingHTTPServer | None = None
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._thread: threading.Thread | None = None

    def serve(self, lookup: LogLookup) -> None:
        handler = type(
            "LogHandler", (_Handler,), {"lookup": staticmethod(lookup), "context": self._context}
        )
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler, bind_and_activate=False)
        httpd.socket.close()
        httpd.socket = self._socket
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="kubelet-logs", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        else:
            with contextlib.suppress(OSError):
                self._socket.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
