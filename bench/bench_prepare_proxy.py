"""A counting TCP relay in front of the registry, for ``bench_prepare.py``'s re-prepare run.

Bytes are relayed unchanged both ways; the client → registry direction is also parsed passively
as a stream of HTTP/1.1 requests (head, then a ``Content-Length`` or chunked body), so every
request is recorded with its method, path and body size: the blob bytes a client uploads are
the bodies of its PATCH/PUT requests under ``/blobs/uploads/``. Loopback only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

BUFFER = 1 << 20


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    body_bytes: int


class _RequestStream:
    """Incremental parser of the requests a client writes on one connection."""

    def __init__(self, record: Callable[[ProxiedRequest], None]) -> None:
        self._record = record
        self._buffer = b""
        self._state = "head"
        self._remaining = 0
        self._method = ""
        self._path = ""
        self._body = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Consumes what it can of the buffer; False when it needs more bytes."""
        if self._state == "head":
            return self._head()
        if self._state in ("body", "chunk-data"):
            take = min(self._remaining, len(self._buffer))
            if take == 0:
                return False
            self._body += take
            self._remaining -= take
            self._buffer = self._buffer[take:]
            if self._remaining:
                return False
            if self._state == "body":
                self._finish()
            else:
                self._state = "chunk-end"
            return True
        line = self._line()
        if line is None:
            return False
        if self._state == "chunk-size":
            size = int(line.split(b";")[0].strip() or b"0", 16)
            self._state, self._remaining = ("chunk-data", size) if size else ("trailer", 0)
        elif self._state == "chunk-end":
            self._state = "chunk-size"
        elif not line:  # the empty line after the trailers
            self._finish()
        return True

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return None
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4 :]
        request_line, *fields = head.split("\r\n")
        parts = request_line.split(" ")
        self._method, self._path = parts[0], parts[1] if len(parts) > 1 else ""
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._body = 0
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = "chunk-size"
        elif int(headers.get("content-length", "0") or 0) > 0:
            self._state, self._remaining = "body", int(headers["content-length"])
        else:
            self._finish()
        return True

    def _finish(self) -> None:
        self._record(ProxiedRequest(self._method, self._path, self._body))
        self._state, self._remaining = "head", 0


class CountingProxy:
    """``127.0.0.1:<port>`` → ``upstream``; ``requests`` lists what clients sent."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._requests: list[ProxiedRequest] = []
        self.bytes_to_upstream = 0
        self.bytes_to_client = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self._requests)

    def _record(self, request: ProxiedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _count(self, to_upstream: int, to_client: int) -> None:
        with self._lock:
            self.bytes_to_upstream += to_upstream
            self.bytes_to_client += to_client

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=30)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        parser = _RequestStream(self._record)
        up = threading.Thread(
            target=self._pump, args=(client, upstream, parser.feed, True), daemon=True
        )
        up.start()
        self._pump(upstream, client, None, False)
        up.join()
        client.close()
        upstream.close()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        observe: Callable[[bytes], None] | None,
        to_upstream: bool,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(BUFFER):
                sink.sendall(data)
                if to_upstream:
                    self._count(len(data), 0)
                else:
                    self._count(0, len(data))
                if observe is not None:
                    try:
                        observe(data)
                    except ValueError:  # not HTTP/1.1 as expected: keep relaying, stop parsing
                        observe = None
                        self._record(ProxiedRequest("?", "(unparsable request stream)", 0))
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[CountingProxy]:
    """``upstream`` is ``host:port``."""
    host, _, port = upstream.rpartition(":")
    proxy = CountingProxy(host, int(port))
    try:
        yield proxy
    finally:
        proxy.close()
