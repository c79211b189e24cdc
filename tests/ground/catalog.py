"""A catalog server process on the test ground (``ai-models-catalog-server``, as the chart runs
it): HTTPS on 127.0.0.1 with a per-run certificate, a client token and a grant key in Secrets
of the API server, publishing the ClusterModels of that API server from the given registry.
Stopped by PID."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from controller.errors import Conflict
from controller.kube import SECRETS, KubeClient, Resource
from tests.ground.certs import CertificateAuthority
from tests.ground.procs import Process, free_port

NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CatalogServerProcess:
    url: str
    """``https://127.0.0.1:<port>``: the base URL a ModelCatalogSource names."""
    host: str
    """``127.0.0.1:<port>``: the ``registry`` of its grants."""
    ca_cert: Path
    """Signs the server's certificate: a CA Secret's ``ca.crt``."""
    token: str
    """A valid client token (the credentials Secret's ``token``)."""
    grant_key: bytes
    namespace: str
    process: Process

    def get(self, path: str, token: str | None = None, **headers: str) -> requests.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.get(
            self.url + path, headers=headers, verify=str(self.ca_cert), timeout=30,
            allow_redirects=False,
        )  # fmt: skip


def _secret(kube: KubeClient, namespace: str, name: str, data: dict[str, bytes]) -> None:
    body = {
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    with contextlib.suppress(Conflict):
        kube.create(SECRETS, body, namespace)
        return
    kube.replace(SECRETS, name, {**body, "metadata": {"name": name, "namespace": namespace}},
                 namespace)  # fmt: skip


@contextlib.contextmanager
def run_catalog_server(
    work: Path,
    kube: KubeClient,
    kubeconfig: Path,
    registry_host: str,
    *,
    namespace: str = "catalog-system",
    prefix: str = "ai-models",
    registry_insecure: bool = True,
    registry_ca: Path | None = None,
    grant_ttl: int = 600,
    selector: str | None = None,
    name: str = "catalog-server",
) -> Iterator[CatalogServerProcess]:
    """``kube`` creates the namespace and Secrets; the server runs with ``kubeconfig``."""
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Conflict):
        kube.create(NAMESPACES, {"metadata": {"name": namespace}})
    token, key = secrets.token_urlsafe(32), secrets.token_bytes(32)
    _secret(kube, namespace, f"{name}-token", {"token": token.encode()})
    _secret(kube, namespace, f"{name}-grant-key", {"key": key})
    authority = CertificateAuthority(work / f"{name}-pki", name=f"{name}-ca")
    pair = authority.issue(name, "127.0.0.1", hosts=("127.0.0.1", "localhost"), server=True)
    config = work / f"{name}-config.json"
    registry = {"host": registry_host, "prefix": prefix, "insecure": registry_insecure}
    config.write_text(json.dumps({"registry": registry}))
    port = free_port()
    argv = [
        sys.executable, "-m", "catalog", "--config", str(config), "--kubeconfig", str(kubeconfig),
        "--namespace", namespace, "--bind-address", "127.0.0.1", "--port", str(port),
        "--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
        "--client-secret", f"{name}-token", "--grant-key-secret", f"{name}-grant-key",
        "--grant-ttl", str(grant_ttl), "--list-cache-seconds", "0", "--secret-cache-seconds", "1",
    ]  # fmt: skip
    if selector is not None:
        argv += ["--selector", selector]
    if registry_ca is not None:
        argv += ["--registry-ca", str(registry_ca)]
    process = Process(name, argv, work, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    server = CatalogServerProcess(
        f"https://127.0.0.1:{port}", f"127.0.0.1:{port}", authority.cert, token, key, namespace,
        process,
    )  # fmt: skip
    try:
        process.wait_ready(lambda: server.get("/healthz").status_code == 200, timeout=30)
        yield server
    finally:
        process.stop()
