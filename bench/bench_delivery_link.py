"""A TCP relay that gives ``bench_delivery.py``'s registry the bandwidth of a network link.

On one machine the registry answers over loopback as fast as a local disk, so a node cache can
only add a hop; on a cluster the registry is across a network. This relay carries the registry
→ client direction at most ``mbps`` megabits per second, one budget shared by every connection
(as one link between a node and the registry); the client → registry direction (the requests)
passes unthrottled. Loopback only; bytes are relayed unchanged.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

PIECE = 64 << 10


class SlowLink:
    def __init__(self, target_host: str, mbps: float) -> None:
        host, _, port = target_host.rpartition(":")
        self._target = (host, int(port))
        self._bytes_per_second = mbps * 1e6 / 8
        self._lock = threading.Lock()
        self._free_at = time.monotonic()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, name="slow-link", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(self._target) as upstream:
            requests = threading.Thread(target=self._pump, args=(client, upstream, False))
            requests.start()
            self._pump(upstream, client, True)
            requests.join()

    def _pump(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        buffer = memoryview(bytearray(PIECE))
        try:
            while count := source.recv_into(buffer):
                if slow:
                    self._wait_for(count)
                sink.sendall(buffer[:count])
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def _wait_for(self, count: int) -> None:
        """Sleeps until the link has carried ``count`` more bytes after those queued before."""
        with self._lock:
            now = time.monotonic()
            self._free_at = max(self._free_at, now) + count / self._bytes_per_second
            until = self._free_at
        time.sleep(max(0.0, until - time.monotonic()))

    def close(self) -> None:
        self._listener.close()
