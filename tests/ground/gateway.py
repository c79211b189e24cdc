"""Upload gateway replicas for the tests: each ``python -m gateway`` in its own process on
127.0.0.1 at a free port, against the given control plane (a kubeconfig), system namespace and
registry, logged to ``<work>/<name>.log``, stopped by PID (``Process.stop``).

    with run_gateways(work, 2, kubeconfig, "ai-models-system", registry.host) as replicas:
        requests.head(f"{replicas[1].url}/v1/uploads/<session>", headers=...)
"""

from __future__ import annotations

import contextlib
import os
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.ground.procs import Process, free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GatewayReplica:
    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def stop(self) -> None:
        self.process.stop()


def start_gateway(
    work: Path,
    kubeconfig: Path,
    namespace: str,
    registry_host: str,
    *,
    name: str = "gateway",
    insecure: bool = True,
    auth_file: Path | None = None,
    ca_file: Path | None = None,
) -> GatewayReplica:
    """One replica, ready (``/healthz`` answers) when this returns."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "--kubeconfig", str(kubeconfig),
            "--bind-address", "127.0.0.1", "--port", str(port),
            "--system-namespace", namespace, "--registry-host", registry_host]  # fmt: skip
    if insecure:
        argv.append("--registry-insecure")
    if auth_file is not None:
        argv += ["--registry-auth-file", str(auth_file)]
    if ca_file is not None:
        argv += ["--registry-ca", str(ca_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_MODELS_", "KUBECONFIG"))}
    env["PYTHONPATH"] = str(REPO)
    process = Process(name, argv, work, env=env, cwd=REPO)
    replica = GatewayReplica(process, port)
    try:
        process.wait_ready(lambda: _healthy(replica), timeout=60)
    except BaseException:
        process.stop()
        raise
    return replica


@contextlib.contextmanager
def run_gateways(
    work: Path,
    count: int,
    kubeconfig: Path,
    namespace: str,
    registry_host: str,
    *,
    insecure: bool = True,
    auth_file: Path | None = None,
    ca_file: Path | None = None,
) -> Iterator[list[GatewayReplica]]:
    """``count`` replicas sharing the control plane and the registry; stopped on exit."""
    replicas: list[GatewayReplica] = []
    try:
        for n in range(count):
            replica = start_gateway(
                work, kubeconfig, namespace, registry_host, name=f"gateway-{n}",
                insecure=insecure, auth_file=auth_file, ca_file=ca_file,
            )  # fmt: skip
            replicas.append(replica)
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def _healthy(replica: GatewayReplica) -> bool:
    with urllib.request.urlopen(f"{replica.url}/healthz", timeout=2) as response:
        return bool(response.status == 200)
