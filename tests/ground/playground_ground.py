"""The playground's ground: the test ground's parts started together for a person to use.

``run_ground`` starts, in order, the control plane (etcd, kube-apiserver,
kube-controller-manager), a registry (the destination, and in offline mode the Ollama-format
source too), the Hub emulator (offline), the chart (rendered by the pinned helm, applied as the
cluster admin), the emulated nodes with their ``kubectl logs`` endpoints, and the product's
processes as the chart's service accounts: the controller and the delivery endpoint (the
consumption webhook stays off: see ``_install``). It stops them in the reverse order.
Everything listens on 127.0.0.1 at free ports; every file is under the run directory it is given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from tests.ground import playground
from tests.ground.controlplane import ControlPlane, run_control_plane
from tests.ground.hub import HubEmulator, run_hub
from tests.ground.hub_repo import minilm_repo
from tests.ground.models import RealModels, locate_real_models
from tests.ground.nodeemu import NodeEmulator
from tests.ground.nodeemu_logs import KubeletLogServer
from tests.ground.nodepki import issue_serving_cert
from tests.ground.ollama import push_ollama_model
from tests.ground.procs import Process, free_port
from tests.ground.registry import Registry, run_registry
from tests.integration.chart import find, install

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
SYSTEM = "d8-ai-models"
RELEASE = "ai-models"
WORKER_IMAGE = "ai-models-worker:playground"
CONTROLLER_IMAGE = "ai-models-controller:playground"
HUGGING_FACE = "https://huggingface.co"
OLLAMA_REGISTRY = "https://registry.ollama.ai"
CONTROLLER_POD = "ai-models-controller-playground"
TOKEN_DURATION = "24h"  # the ground's certificates last a day too (tests.ground.certs)


@dataclass(frozen=True)
class Options:
    offline: bool = False
    throttle_mib: float | None = None
    """Offline only: the Hub emulator's bytes per second (MiB), to watch progress move."""
    nodes: int = 1


@dataclass
class Ground:
    """What runs, for the state file and ``status``."""

    plane: ControlPlane
    registry: Registry
    hub: HubEmulator | None
    nodes: list[str]
    processes: dict[str, Process] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "apiServer": self.plane.url,
            "registry": self.registry.url,
            "huggingFace": self.hub.url if self.hub else HUGGING_FACE,
            "ollama": self.registry.url if self.hub else OLLAMA_REGISTRY,
            "nodes": self.nodes,
            "components": {name: p.log.name for name, p in self.processes.items()},
        }


@contextlib.contextmanager
def _offline_sources(registry: Registry, options: Options) -> Iterator[HubEmulator]:
    """The Hub emulator serving the real MiniLM under the public sample's repository id, and
    the real SmolLM2 GGUF pushed as ``library/smollm2:135m`` (samples/model-ollama.yaml)."""
    real: RealModels = locate_real_models()
    push_ollama_model(
        registry.url,
        "smollm2",
        "135m",
        gguf=real.smollm2_gguf,
        config={"model_format": "gguf", "model_family": "llama", "file_type": "Q4_1"},
        template="{{ .Prompt }}",
        system="You are a helpful assistant.",
    )
    with run_hub() as hub:
        hub.add(minilm_repo(real))
        if options.throttle_mib:
            hub.bytes_per_second = options.throttle_mib * 1024 * 1024
        yield hub


def _install(plane: ControlPlane, registry: Registry, hub: HubEmulator | None) -> dict[str, Any]:
    """Applies the chart with this machine's values; its controller configuration."""
    hf_endpoint = hub.url if hub else HUGGING_FACE
    ollama = registry.url if hub else OLLAMA_REGISTRY
    docs = install(
        plane,
        SYSTEM,
        sets=(
            f"image.worker={WORKER_IMAGE}",
            f"image.controller={CONTROLLER_IMAGE}",
            f"registry.host={registry.host}",
            "registry.insecure=true",
            f"sources.huggingFace.endpoint={hf_endpoint}",
            f"sources.ollama.registry={ollama}",
            "worker.progressIntervalSeconds=1",
            "controller.logFormat=console",
            # The API server calls a webhook at its Service's endpoint addresses, which may not
            # be loopback ones, and the emulated nodes run no init container (the consumption
            # webhook injects one): consumption is shown on the real test node only.
            "webhook.enabled=false",
            f"delivery.port={free_port()}",
        ),
    )
    config: dict[str, Any] = yaml.safe_load(
        find(docs, "ConfigMap", f"{RELEASE}-controller")["data"]["config.yaml"]
    )
    config["controller"].update({"metricsPort": 0, "healthPort": 0, "bindAddress": "127.0.0.1"})
    return config


def _token_kubeconfig(plane: ControlPlane, account: str, path: Path) -> Path:
    token = plane.kubectl_run(
        "create", "token", account, "-n", SYSTEM, f"--duration={TOKEN_DURATION}"
    )
    if token.returncode != 0:
        raise RuntimeError(f"a token for {account} failed: {token.stderr}")
    return plane.write_kubeconfig(path, {"token": token.stdout.strip()})


@contextlib.contextmanager
def _nodes(plane: ControlPlane, options: Options, work: Path) -> Iterator[list[str]]:
    """The emulated nodes, each with its kubelet log endpoint; they run pods of every
    namespace whose image is the worker's."""
    names = [f"playground-node-{i + 1}" for i in range(options.nodes)]
    with contextlib.ExitStack() as stack:
        for name in names:
            serving = issue_serving_cert(plane, work / "pki", name, "127.0.0.1")
            logs = KubeletLogServer(serving)
            stack.callback(logs.close)
            emulator = NodeEmulator(
                plane,
                work,
                {WORKER_IMAGE: [str(BIN / "ai-models-worker")]},
                node_name=name,
                image_paths=[REPO],
                kubelet_port=logs.port,
            )
            logs.serve(emulator.container_log)
            stack.enter_context(emulator)
        yield names


def _start_components(
    plane: ControlPlane, config: dict[str, Any], work: Path, stack: contextlib.ExitStack
) -> dict[str, Process]:
    """The controller and the delivery endpoint, each as the chart's service account; their
    stops are on ``stack`` as soon as they run."""
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    controller_kubeconfig = _token_kubeconfig(
        plane, f"{RELEASE}-controller", work / "controller.kubeconfig"
    )
    delivery_kubeconfig = _token_kubeconfig(
        plane, f"{RELEASE}-delivery", work / "delivery.kubeconfig"
    )
    delivery_port = int(config["webhook"]["materialize"]["deliveryEndpoint"].rsplit(":", 1)[1])
    env = {**os.environ, "POD_NAME": CONTROLLER_POD}
    controller = Process(
        "controller",
        [str(BIN / "ai-models-controller"), "--config", str(config_path),
         "--kubeconfig", str(controller_kubeconfig)],
        work,
        env=env,
    )  # fmt: skip
    stack.callback(controller.stop)
    delivery = Process(
        "delivery",
        [str(BIN / "ai-models-delivery"), "--config", str(config_path),
         "--kubeconfig", str(delivery_kubeconfig), "--bind-address", "127.0.0.1",
         "--port", str(delivery_port), "--cache-dir", str(work / "delivery-cache"),
         "--cache-size", "10Gi"],
        work,
    )  # fmt: skip
    stack.callback(delivery.stop)
    return {"controller": controller, "delivery": delivery}


def _wait_leading(plane: ControlPlane, controller: Process) -> None:
    """Ready when the controller holds its leader Lease: it reconciles from then on."""

    def leading() -> bool:
        result = plane.kubectl_run(
            "get", "lease", f"{RELEASE}-controller", "-n", SYSTEM,
            "-o", "jsonpath={.spec.holderIdentity}",
        )  # fmt: skip
        return result.returncode == 0 and result.stdout.strip() == CONTROLLER_POD

    controller.wait_ready(leading, timeout=60)


@contextlib.contextmanager
def run_ground(run: Path, options: Options) -> Iterator[Ground]:
    """Everything started and ready; stopped in reverse order on exit."""
    with contextlib.ExitStack() as stack:
        plane = stack.enter_context(run_control_plane(run / "control-plane"))
        registry = stack.enter_context(run_registry(run / "registry"))
        hub = None
        if options.offline:
            hub = stack.enter_context(_offline_sources(registry, options))
        config = _install(plane, registry, hub)
        nodes = stack.enter_context(_nodes(plane, options, run / "nodes"))
        processes = _start_components(plane, config, run / "components", stack)
        _wait_leading(plane, processes["controller"])
        ground = Ground(plane, registry, hub, nodes, processes)
        yield ground


class _Signals:
    """SIGTERM/SIGINT only set a flag: the ground is never interrupted halfway through starting
    or stopping a process (a stop asked during startup happens right after it)."""

    def __init__(self) -> None:
        self.stop = False
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True


def serve(state: Path, *, offline: bool, throttle: float | None, nodes: int) -> int:
    """The supervisor: runs the ground until SIGTERM; ``ready.json`` tells ``up`` it is ready."""
    signals = _Signals()
    pid = os.getpid()
    me = {"pid": pid, "start": playground.start_time(pid)}
    playground.write_json(state / "supervisor.json", me)
    began = time.monotonic()
    options = Options(offline=offline, throttle_mib=throttle, nodes=nodes)
    try:
        with run_ground(state / "run", options) as ground:
            shutil.copyfile(ground.plane.kubeconfig, state / "kubeconfig")
            (state / "kubeconfig").chmod(0o600)
            (state / "bin").mkdir(exist_ok=True)
            (state / "bin" / "kubectl").symlink_to(ground.plane.kubectl)
            ready = {
                **ground.describe(),
                "startupSeconds": round(time.monotonic() - began, 1),
                "processes": playground.children(pid),
            }
            playground.write_json(state / "ready.json", ready)
            print(f"ready in {ready['startupSeconds']} s", flush=True)
            while not signals.stop:
                time.sleep(0.5)
            print("stopping", flush=True)
            (state / "ready.json").unlink(missing_ok=True)
    finally:
        (state / "ready.json").unlink(missing_ok=True)
    print("stopped", flush=True)
    return 0
