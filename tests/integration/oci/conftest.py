"""Fixtures of the OCI integration tests: sources that serve a local directory (and count, or
break), plans of the real models, a TLS + htpasswd registry with a docker config file, and a
loopback proxy that injects 503 / 429 / connection resets in front of the real registry."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import pytest

from tests.ground.certs import CertificateAuthority
from tests.ground.models import RealModels
from tests.ground.registry import Registry, run_registry
from tests.ground.token_registry import TokenRegistry, docker_config, run_token_registry
from worker.errors import SourceUnavailable
from worker.inspect.reader import ByteSource, FileByteSource
from worker.plan import FileRole, PlannedFile, SourcePlan

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin")
DOC_NAMES = ("readme", "license", ".gitattributes")


def _role(path: str) -> FileRole:
    if path.endswith(WEIGHT_SUFFIXES):
        return "weight"
    if path.lower().startswith(DOC_NAMES) or path.endswith(".md"):
        return "doc"
    return "config"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while piece := file.read(8 << 20):
            digest.update(piece)
    return digest.hexdigest()


def plan_directory(root: Path, name: str, *, all_known: bool = False) -> SourcePlan:
    """A plan as a Hub source gives it: weights with their sha256 (LFS), small files without."""
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        role = _role(relative)
        known = sha256_file(path) if role == "weight" or all_known else None
        files.append(PlannedFile(relative, path.stat().st_size, role, known))
    return SourcePlan(
        url=f"https://huggingface.co/test/{name}",
        source_type="HuggingFace",
        revision="0" * 40,
        name=name,
        format="GGUF" if any(f.path.endswith(".gguf") for f in files) else "Safetensors",
        files=tuple(files),
    )


@dataclass
class DirectorySource:
    """Serves planned files from a directory; counts bytes and offsets; can break mid-file."""

    root: Path
    break_file: str | None = None
    break_after_chunks: int = 0
    streamed: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def plan(self) -> SourcePlan:
        return plan_directory(self.root, self.root.name)

    def byte_source(self, path: str) -> ByteSource:
        return FileByteSource(self.root / path)

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        with self._lock:
            self.offsets.setdefault(path, []).append(offset)
        with (self.root / path).open("rb") as file:
            file.seek(offset)
            chunks = 0
            while piece := file.read(chunk_size):
                if path == self.break_file and chunks == self.break_after_chunks:
                    raise SourceUnavailable(f"{path}: connection reset by the source (test)")
                chunks += 1
                with self._lock:
                    self.streamed[path] = self.streamed.get(path, 0) + len(piece)
                yield piece


@dataclass(frozen=True)
class SecureRegistry:
    registry: Registry
    auth_file: Path
    wrong_auth_file: Path


@pytest.fixture(scope="session")
def minilm_plan(real_models: RealModels) -> SourcePlan:
    return plan_directory(real_models.minilm_dir, "all-MiniLM-L6-v2")


@pytest.fixture
def repository() -> str:
    """A fresh repository name: the session's registry is shared by all tests."""
    return f"ai-models/test/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def secure_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRegistry]:
    """docker-registry with TLS (our own CA) and htpasswd (bcrypt, from the bcrypt package)."""
    work = tmp_path_factory.mktemp("secure-registry")
    authority = CertificateAuthority(work / "pki")
    server = authority.issue("registry", "127.0.0.1", hosts=("127.0.0.1",), server=True)
    htpasswd = work / "htpasswd"
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(rounds=5)).decode()
    htpasswd.write_text(f"pusher:{hashed}\n")
    with run_registry(work, tls=server, ca_cert=authority.cert, htpasswd=htpasswd) as registry:
        yield SecureRegistry(
            registry,
            docker_config(work / "config.json", registry.host, "pusher", "right-password"),
            docker_config(work / "wrong.json", registry.host, "pusher", "wrong-password"),
        )


class FaultProxy:
    """Forwards to the registry; the first requests get the planned faults instead."""

    def __init__(self, upstream: Registry) -> None:
        self.upstream = upstream
        self.faults: list[str] = []
        self.seen: list[str] = []
        self.upload_bytes = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def next_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            self.seen.append(f"{method} {path}")
            return self.faults.pop(0) if self.faults else None

    def count_upload(self, method: str, path: str, nbytes: int) -> None:
        if "/blobs/uploads/" in path and method in ("PATCH", "PUT"):
            with self._lock:
                self.upload_bytes += nbytes

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _serve(self) -> None:
            body = self._body()
            fault = proxy.next_fault(self.command, self.path)
            if fault == "reset":
                # SO_LINGER 0: close with an RST, as a crashed peer or a load balancer does.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return
            if fault is not None:
                status, _, retry_after = fault.partition(":")
                self.send_response(int(status))
                if retry_after:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            proxy.count_upload(self.command, self.path, len(body))
            self._forward(body)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""
            pieces = []  # a streamed upload: <hex size>CRLF<data>CRLF ... 0CRLF CRLF
            while size := int(self.rfile.readline().split(b";")[0], 16):
                pieces.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(pieces)

        def _forward(self, body: bytes) -> None:
            host, _, port = proxy.upstream.host.partition(":")
            upstream = http.client.HTTPConnection(host, int(port))
            skipped = ("connection", "transfer-encoding", "content-length")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skipped}
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            length = answer.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

    return Handler


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry)
    yield proxy
    proxy.close()


# ---- a registry with bearer-token auth and its token server (tests.ground.token_registry) ----


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    with run_token_registry(tmp_path_factory.mktemp("token-registry")) as registry:
        yield registry


# ---- the peer clients (oras, modctl) of the interop tests --------------------------------------


@pytest.fixture(scope="session")
def peer_bin(repo_root: Path) -> Path:
    """The directory with the real ``oras`` and ``modctl``: ``$AI_MODELS_PEERS_BIN`` (set by
    ``hack/test.sh``), else what ``hack/build-peers.sh`` prints (it builds them when missing)."""
    configured = os.environ.get("AI_MODELS_PEERS_BIN")
    if not configured:
        built = subprocess.run(
            [str(repo_root / "hack" / "build-peers.sh")],
            capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr[-4000:]
        configured = built.stdout.splitlines()[-1]
    directory = Path(configured)
    for tool in ("oras", "modctl"):
        assert (directory / tool).is_file(), f"{directory / tool} is missing"
    return directory
