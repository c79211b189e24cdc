"""The end-to-end ground: the chart installed on the real control plane, the controller running
as the chart's service account, the node emulator running worker pods with the real
``ai-models-worker``, the Hub emulator and an Ollama-format registry as sources, and a real
registry (restartable on its port) as the destination. Everything on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ground.controlplane import ControlPlane
from tests.ground.gateway import GatewayReplica, run_gateways
from tests.ground.hub import HubEmulator
from tests.ground.nodeemu import NodeEmulator
from tests.ground.procs import free_port
from tests.ground.registry import Registry, run_registry
from tests.integration.chart import find, install
from tests.integration.sources.conftest import hub, ollama_model  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "d8-ai-models"
WORKER_IMAGE = "ai-models-worker:e2e"
WORKER = REPO / ".venv" / "bin" / "ai-models-worker"
CONTROLLER = REPO / ".venv" / "bin" / "ai-models-controller"
JSON = dict[str, Any]


class RestartableRegistry:
    """The destination registry; ``stop()`` and ``start()`` keep its port and its storage."""

    def __init__(self, work: Path) -> None:
        self._work = work
        self.port = free_port()
        self._context: Any = None
        self.registry: Registry | None = None

    def start(self) -> Registry:
        self._context = run_registry(self._work, name="e2e-registry", port=self.port)
        self.registry = self._context.__enter__()
        return self.registry

    def stop(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@dataclass
class ControllerProcess:
    """One ``ai-models-controller`` process (restartable, killable)."""

    config: Path
    kubeconfig: Path
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        log = self.log.with_suffix(f".{len(self.logs)}.log")
        self.logs.append(log)
        handle = log.open("wb")
        self.popen = subprocess.Popen(
            [str(CONTROLLER), "--config", str(self.config), "--kubeconfig", str(self.kubeconfig)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "POD_NAME": f"controller-{self.log.stem}-{len(self.logs)}"},
        )

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@pytest.fixture(scope="package")
def e2e_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableRegistry]:
    registry = RestartableRegistry(tmp_path_factory.mktemp("e2e-registry"))
    registry.start()
    yield registry
    registry.stop()


def controller_kubeconfig(plane: ControlPlane, work: Path) -> Path:
    token = plane.kubectl_run(
        "create", "token", "ai-models-controller", "-n", SYSTEM, "--duration=6h"
    )
    assert token.returncode == 0, token.stderr
    return plane.write_kubeconfig(work / "controller.kubeconfig", {"token": token.stdout.strip()})


@pytest.fixture(scope="package")
def e2e_chart(
    control_plane: ControlPlane,
    e2e_registry: RestartableRegistry,
    registry: Registry,
    hub: HubEmulator,  # noqa: F811 - the fixture imported above
) -> list[JSON]:
    """The chart installed with e2e values; its rendered documents."""
    return install(
        control_plane,
        SYSTEM,
        sets=(
            f"image.worker={WORKER_IMAGE}",
            f"registry.host={e2e_registry.host}",
            "registry.insecure=true",
            f"sources.huggingFace.endpoint={hub.url}",
            f"sources.ollama.registry={registry.url}",
            "worker.maxConcurrent=1",
            "worker.backoffLimit=2",
            "worker.progressIntervalSeconds=1",
            "controller.logFormat=console",
        ),
    )


def service_account_kubeconfig(
    plane: ControlPlane, account: str, namespace: str, path: Path
) -> Path:
    token = plane.kubectl_run("create", "token", account, "-n", namespace, "--duration=6h")
    assert token.returncode == 0, token.stderr
    return plane.write_kubeconfig(path, {"token": token.stdout.strip()})


@pytest.fixture(scope="package")
def upload_gateways(
    control_plane: ControlPlane,
    e2e_chart: list[JSON],
    e2e_registry: RestartableRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[GatewayReplica]]:
    """Two upload gateway replicas as the chart's ServiceAccount, in front of the e2e registry;
    the controller's configuration sends users to the first one (``e2e_config``)."""
    work = tmp_path_factory.mktemp("gateways")
    kubeconfig = service_account_kubeconfig(
        control_plane, "ai-models-upload-gateway", SYSTEM, work / "gateway.kubeconfig"
    )
    with run_gateways(work, 2, kubeconfig, SYSTEM, e2e_registry.host) as replicas:
        yield replicas


@pytest.fixture(scope="package")
def e2e_config(
    e2e_chart: list[JSON],
    upload_gateways: list[GatewayReplica],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The chart's rendered controller configuration, with local ports."""
    docs = e2e_chart
    config = yaml.safe_load(find(docs, "ConfigMap", "ai-models-controller")["data"]["config.yaml"])
    config["controller"].update(
        {
            "metricsPort": 0,
            "healthPort": 0,
            "bindAddress": "127.0.0.1",
            "retryBaseSeconds": 0.5,
            "retryMaxSeconds": 5,
            "leaderElection": {
                "leaseDurationSeconds": 4,
                "renewDeadlineSeconds": 3,
                "retryPeriodSeconds": 0.5,
            },
        }
    )
    # The webhook runs as the chart enables it (certificate, caBundle, gate informer under the
    # chart's RBAC), on a free loopback port: several controllers run at once in these tests.
    config["webhook"].update({"port": 0, "bindAddress": "127.0.0.1"})
    # Upload sessions name the first gateway replica, both for users and in the cluster.
    gateway = upload_gateways[0].url
    config["upload"].update({"inClusterURL": gateway, "externalURL": gateway})
    path = tmp_path_factory.mktemp("e2e-config") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="package")
def node(
    control_plane: ControlPlane, e2e_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeEmulator]:
    images = {WORKER_IMAGE: [str(WORKER)]}
    with NodeEmulator(
        control_plane,
        tmp_path_factory.mktemp("node"),
        images,
        namespaces=[SYSTEM],
        image_paths=[REPO],  # the checkout may live under /tmp, where the Job mounts an emptyDir
    ) as emulator:
        yield emulator


@pytest.fixture(scope="package")
def controller(
    control_plane: ControlPlane,
    e2e_config: Path,
    node: NodeEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControllerProcess]:
    work = tmp_path_factory.mktemp("controller")
    process = ControllerProcess(
        e2e_config, controller_kubeconfig(control_plane, work), work / "primary"
    )
    process.start()
    yield process
    process.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 120.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not reached within {timeout}s (last: {last!r})")


def get_json(plane: ControlPlane, *args: str) -> JSON:
    result = plane.kubectl_run("get", *args, "-o", "json")
    if result.returncode != 0:
        return {}
    data: JSON = json.loads(result.stdout)
    return data
