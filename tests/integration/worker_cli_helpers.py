"""Helpers of ``test_worker_cli.py``: the worker run as a subprocess with a clean environment, its
one-line JSON outcome, a registry proxy that counts what reached the registry (and can hold the
next upload chunk, to kill the worker with bytes in flight), and a few file helpers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

WORKER = Path(sys.executable).with_name("ai-models-worker")
"""The console script of the environment the tests run in (``.venv/bin/ai-models-worker``)."""
FAILURE_KEYS = {"reason", "message"}


def worker_env(home: Path, **variables: str) -> dict[str, str]:
    """What a pod gives the worker, nothing inherited from the test's shell (no proxy, no token,
    no docker config, no ``POD_NAME``)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **variables,
    }


@dataclass(frozen=True)
class WorkerRun:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def result(self) -> dict[str, Any]:
        """The one JSON line of a successful run."""
        assert self.returncode == 0, self.describe()
        lines = self.stdout.splitlines()
        assert len(lines) == 1, self.describe()
        document = json.loads(lines[0])
        assert isinstance(document, dict)
        assert "Traceback" not in self.stderr, self.describe()
        return document

    def failure(self, exit_code: int) -> dict[str, str]:
        """The ``{reason, message}`` line of a failed run: the last line of stderr and the only
        one of that shape, with nothing on stdout and no traceback anywhere."""
        assert self.returncode == exit_code, self.describe()
        assert self.stdout == "", self.describe()
        assert "Traceback" not in self.stderr, self.describe()
        lines = self.stderr.splitlines()
        failures = [line for line in lines if _is_failure_line(line)]
        assert failures == lines[-1:], self.describe()
        document: dict[str, str] = json.loads(failures[0])
        return document

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv)}\nexit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}"
            f"\n--- stderr\n{self.stderr[-6000:]}"
        )


def _is_failure_line(line: str) -> bool:
    try:
        document = json.loads(line)
    except ValueError:
        return False
    return isinstance(document, dict) and set(document) == FAILURE_KEYS


def start_worker(
    args: Sequence[str], env: dict[str, str], *, wrapper: Sequence[str] = ()
) -> subprocess.Popen[str]:
    """``ai-models-worker ARGS`` in the background (``wrapper`` goes in front, e.g. unshare)."""
    return subprocess.Popen(
        [*wrapper, str(WORKER), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 60.0) -> WorkerRun:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"the worker ran longer than {timeout}s:\n{stderr[-4000:]}") from None
    argv = tuple(str(a) for a in process.args) if isinstance(process.args, list) else ()
    return WorkerRun(argv, process.returncode, stdout, stderr)


def run_worker(
    args: Sequence[str], env: dict[str, str], *, wrapper: Sequence[str] = (), timeout: float = 60
) -> WorkerRun:
    return finish(start_worker(args, env, wrapper=wrapper), timeout)


def on_tiny_tmpfs(mountpoint: Path, size: str = "1m", fill: bool = False) -> list[str]:
    """A wrapper that runs the command in a private mount namespace with a ``size`` tmpfs on
    ``mountpoint`` (the host's mounts are untouched; needs root). ``fill`` fills it up first."""
    script = 'mount -t tmpfs -o size="$1" tmpfs "$0" || exit 97; '
    if fill:
        script += 'dd if=/dev/zero of="$0/filler" bs=64k 2>/dev/null; '
    script += 'shift; exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
            str(mountpoint), size]  # fmt: skip


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while piece := file.read(8 << 20):
            digest.update(piece)
    return digest.hexdigest()


def docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    """A ``DOCKER_CONFIG`` directory whose ``config.json`` has these credentials for ``host``."""
    directory.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return directory


def registry_blob_file(storage: Path, digest: str) -> Path:
    """Where docker-registry's filesystem driver keeps a blob's bytes."""
    hex_digest = digest.removeprefix("sha256:")
    return storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


# ---- a counting proxy in front of the registry -----------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One request the registry answered (recorded after its answer)."""

    method: str
    path: str
    request_bytes: int
    status: int

    @property
    def is_upload(self) -> bool:
        """A blob upload request carrying bytes (a PATCH chunk or the final PUT)."""
        return self.method in ("PATCH", "PUT") and "/blobs/uploads/" in self.path


class CountingProxy:
    """Forwards to a registry; records every exchange once the registry has answered it.

    ``hold_uploads()`` makes the proxy keep the next PATCH chunks to itself: their bytes are
    received but never reach the registry (as if the network still carried them when the worker
    died) — or, with ``deliver_half``, the registry gets the first half of the body and then a
    reset connection, as when a worker dies while it sends to a registry with nothing in front.
    A request whose body did not fully arrive is never forwarded.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        self._holding = threading.Event()
        self._released = threading.Event()
        self._hold_from = 0
        self.deliver_half = False
        self.held_bytes: list[int] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(self))
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def committed_upload_bytes(self, since: int = 0) -> int:
        """Upload bytes the registry accepted (2xx) in the exchanges from index ``since``."""
        return sum(
            e.request_bytes for e in self.exchanges[since:] if e.is_upload and 200 <= e.status < 300
        )

    def hold_uploads(self, min_bytes: int = 0, *, deliver_half: bool = False) -> None:
        """From now on, PATCH chunks of at least ``min_bytes`` are held."""
        self._hold_from = min_bytes
        self.deliver_half = deliver_half
        self._holding.set()

    def holds(self, method: str, nbytes: int) -> bool:
        return method == "PATCH" and self._holding.is_set() and nbytes >= self._hold_from

    def keep(self, nbytes: int) -> None:
        with self._lock:
            self.held_bytes.append(nbytes)
        self._released.wait(timeout=120)

    def release(self) -> None:
        """Drops what is held and forwards everything again."""
        self._holding.clear()
        self._released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _proxy_handler(proxy: CountingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _serve(self) -> None:
            body = self._body()
            if body is None:  # the client died mid-request
                self.close_connection = True
                return
            if proxy.holds(self.command, len(body)):
                if proxy.deliver_half:
                    self._deliver_half(body)
                proxy.keep(len(body))
                self.close_connection = True
                return
            status, headers, data = self._forward(body)
            proxy.record(Exchange(self.command, self.path, len(body), status))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                length_header = (
                    dict(headers).get("Content-Length") if self.command == "HEAD" else None
                )
                self.send_header("Content-Length", length_header or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        def _body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                return body if len(body) == length else None
            pieces = []  # a streamed upload: <hex size>CRLF<data>CRLF ... 0CRLF CRLF
            try:
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    pieces.append(self.rfile.read(size))
                    self.rfile.readline()
            except ValueError:  # a line cut short
                return None
            self.rfile.readline()
            return b"".join(pieces)

        def _deliver_half(self, body: bytes) -> None:
            host, _, port = proxy.upstream.partition(":")
            lines = [f"{self.command} {self.path} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() != "connection"]
            half = body[: len(body) // 2]
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                half = b"%x\r\n%b\r\n" % (len(half), half)  # a streamed body, not ended
            with socket.create_connection((host, int(port)), timeout=60) as upstream:
                head = ("\r\n".join(lines) + "\r\n\r\n").encode()
                upstream.sendall(head + half)
                time.sleep(0.2)  # the registry writes what it got
                # SO_LINGER 0: the close is a reset, as from a peer that died.
                upstream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            host, _, port = proxy.upstream.partition(":")
            upstream = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                skipped = ("connection", "transfer-encoding", "content-length")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skipped}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                return answer.status, answer.getheaders(), answer.read()
            finally:
                upstream.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

    return Handler
