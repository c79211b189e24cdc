"""A real OCI registry for the tests: Debian's CNCF distribution registry (``docker-registry``).

The fixture writes its own config file (never Debian's default, which enables htpasswd with a
directory as the path): filesystem storage in a temp dir, deletes enabled, 127.0.0.1 at a free
port, plain HTTP unless a TLS key pair is given.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.ground.certs import KeyPair
from tests.ground.procs import Process, free_port

REGISTRY_BINARY = "docker-registry"


@dataclass(frozen=True)
class Registry:
    host: str
    """``127.0.0.1:<port>``, the host part of references."""
    url: str
    """``http://127.0.0.1:<port>`` (or https with TLS)."""
    storage: Path
    ca_cert: Path | None = None


def _config(
    storage: Path, port: int, tls: KeyPair | None, htpasswd: Path | None
) -> dict[str, object]:
    http: dict[str, object] = {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": http,
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "ai-models-test", "path": str(htpasswd)}}
    return config


@contextlib.contextmanager
def run_registry(
    work: Path,
    *,
    tls: KeyPair | None = None,
    ca_cert: Path | None = None,
    htpasswd: Path | None = None,
    name: str = "registry",
    port: int | None = None,
) -> Iterator[Registry]:
    """``port``: a fixed port, to restart a registry where its clients expect it (same storage
    when the same ``work`` and ``name`` are given)."""
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RuntimeError("docker-registry is not installed: `make test` installs it with apt-get")
    work.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    storage = work / f"{name}-storage"
    config = work / f"{name}.yml"
    config.write_text(yaml.safe_dump(_config(storage, port, tls, htpasswd)))
    scheme = "https" if tls else "http"
    registry = Registry(f"127.0.0.1:{port}", f"{scheme}://127.0.0.1:{port}", storage, ca_cert)
    # Environment without REGISTRY_* overrides: the config file is the whole truth.
    process = Process(name, [binary, "serve", str(config)], work, env={"PATH": "/usr/bin:/bin"})
    try:
        process.wait_ready(lambda: _answers(registry), timeout=30)
        yield registry
    finally:
        process.stop()


def _answers(registry: Registry) -> bool:
    context = ssl.create_default_context(cafile=str(registry.ca_cert)) if registry.ca_cert else None
    try:
        with urllib.request.urlopen(f"{registry.url}/v2/", timeout=2, context=context) as r:
            return bool(r.status == 200)
    except urllib.error.HTTPError as error:
        return error.code == 401  # alive, asks for credentials
