"""The real-node ground: the control plane of ``tests/conftest.py`` with a real kubelet,
containerd and runc running the images built from this tree's Dockerfiles.

- ``real_node`` (package: stopped before the unit tests run, like the e2e ground):
  ``tests.ground.node.run_node`` — pod network, containerd, kubelet, kube-scheduler; the images
  of ``hack/build-images.sh`` (session) imported. When it stops, the host is checked against
  the snapshot taken before it started.
- ``node_hub``, ``node_registry``: a Hub emulator serving MiniLM and a destination registry, on
  127.0.0.1 and exposed to pods at the bridge's gateway address (the CDN redirect too).
- ``node_config`` (package): the chart installed with the built images (``imagePullPolicy:
  Never``), the controller, worker Jobs and the delivery DaemonSet pinned to the node, the node
  cache's hostPath in the run's directory, and registry credentials (``node_registry_password``,
  Secret ``node-registry-auth``: the node registry accepts anonymous requests and ignores them,
  but they travel where a real registry needs them, so a leak shows).
- ``node_controller`` (module): the controller running on the host as the chart's service
  account, as in ``tests/e2e``; its preparation Jobs run as real pods on the real node. The
  chart's own Deployment (the controller image, pinned to the node) and the delivery DaemonSet
  (on every real node: their label) only run where ``tests.ground.workloads`` starts their
  controllers (``test_leader_failover.py``, ``test_model_consumption.py``).
- ``second_node`` (module, only where a test asks for it): ``tests.ground.netns_node`` — a
  second kubelet and containerd in network and mount namespaces of their own, tainted
  ``SECOND_NODE_TAINT``, the images imported before its kubelet starts, a delivery cache
  directory of its own behind the same hostPath; checked for leftovers when it stops.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import SYSTEM, ControllerProcess, controller_kubeconfig
from tests.ground.controlplane import ControlPlane
from tests.ground.hub import HubEmulator, run_hub
from tests.ground.hub_repo import HubRepo
from tests.ground.images import (
    CONTROLLER_IMAGE,
    WORKER_IMAGE,
    BuiltImages,
    build_images,
    import_images,
)
from tests.ground.models import RealModels
from tests.ground.netns_node import run_second_node
from tests.ground.node import NODE_LABEL, RealNode, processes_of_run, run_node
from tests.ground.registry import Registry, run_registry
from tests.integration.chart import find, install

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
REGISTRY_AUTH_SECRET = "node-registry-auth"
REGISTRY_USER = "ai-models"
TIMINGS: dict[str, float] = {}
"""Seconds of each step of this session, printed when the node stops (``pytest -s`` shows it)."""


@pytest.fixture(scope="session")
def node_images() -> BuiltImages:
    images = build_images()
    TIMINGS["build images"] = images.build_seconds
    return images


@pytest.fixture(scope="package")
def real_node(
    control_plane: ControlPlane,
    node_images: BuiltImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RealNode]:
    work = tmp_path_factory.mktemp("real-node")
    started = time.monotonic()
    with run_node(control_plane, work) as node:
        TIMINGS["node start"] = time.monotonic() - started
        started = time.monotonic()
        import_images(node, node_images)
        TIMINGS["image import"] = time.monotonic() - started
        yield node
    print(f"real node timings (s): {TIMINGS}", file=sys.stderr)
    left = node.snapshot.leftovers(work) + [f"pid {p}" for p in processes_of_run(work, node.socket)]
    assert left == [], f"the real node left these behind: {left}"


@pytest.fixture(scope="module")
def second_node(
    real_node: RealNode, node_images: BuiltImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealNode]:
    work = tmp_path_factory.mktemp("second-node")
    with run_second_node(real_node, work, node_images, [delivery_cache(real_node)]) as second:
        TIMINGS.update({f"second node: {step}": s for step, s in second.seconds.items()})
        yield second.node
        started = time.monotonic()
    TIMINGS["second node: stop"] = time.monotonic() - started
    assert second.leftovers() == [], f"the second node left these behind: {second.leftovers()}"


def delivery_cache(node: RealNode) -> Path:
    """The delivery DaemonSet's hostPath: in the run's directory, nothing left on the host (the
    second node binds a directory of its own over it)."""
    return node.work / "delivery-cache"


@pytest.fixture(scope="package")
def node_hub(real_node: RealNode, real_models: RealModels) -> Iterator[HubEmulator]:
    with run_hub() as hub:
        hub.add(HubRepo.from_dir(MINILM, real_models.minilm_dir, pipeline_tag="feature-extraction"))
        hub_port = int(hub.url.rsplit(":", 1)[1])
        cdn_port = int(hub.cdn_url.rsplit(":", 1)[1])
        hub.url = f"http://{real_node.network.expose(hub_port)}"
        hub.cdn_url = f"http://{real_node.network.expose(cdn_port)}"
        yield hub


@pytest.fixture(scope="package")
def node_registry(
    real_node: RealNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("node-registry"), name="node-registry") as reg:
        real_node.network.expose(int(reg.host.rsplit(":", 1)[1]))
        yield reg


def pod_address(registry: Registry, node: RealNode) -> str:
    """The registry as pods (and the controller) reach it: the gateway address, same port."""
    return f"{node.network.gateway}:{registry.host.rsplit(':', 1)[1]}"


@pytest.fixture(scope="package")
def node_registry_password() -> str:
    """The password of the registry credentials the chart is given (``registry.authSecretName``):
    the node registry accepts anonymous requests, so they are sent and ignored, but they are
    mounted where a real registry needs them and a leak into a workload pod shows."""
    return secrets.token_hex(16)


def _registry_auth_secret(plane: ControlPlane, host: str, password: str) -> None:
    token = base64.b64encode(f"{REGISTRY_USER}:{password}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": token}}})
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": REGISTRY_AUTH_SECRET, "namespace": SYSTEM},
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }
    applied = plane.kubectl_run("apply", "-f", "-", stdin=json.dumps(secret))
    assert applied.returncode == 0, applied.stderr


@pytest.fixture(scope="package")
def node_config(
    control_plane: ControlPlane,
    real_node: RealNode,
    node_registry: Registry,
    node_registry_password: str,
    node_hub: HubEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    docs = install(
        control_plane,
        SYSTEM,
        sets=(
            f"image.worker={WORKER_IMAGE}",
            f"image.controller={CONTROLLER_IMAGE}",
            "image.pullPolicy=Never",
            f"registry.host={pod_address(node_registry, real_node)}",
            "registry.insecure=true",
            f"registry.authSecretName={REGISTRY_AUTH_SECRET}",
            f"sources.huggingFace.endpoint={node_hub.url}",
            # Other packages' Models may still exist: their Jobs must not keep ours queued, nor
            # may pods land on the Nodes that the node emulator left behind.
            "worker.maxConcurrent=3",
            f"worker.nodeSelector.kubernetes\\.io/hostname={real_node.name}",
            f"controller.nodeSelector.kubernetes\\.io/hostname={real_node.name}",
            # Every real node: the second one's test needs a delivery pod there too.
            "delivery.nodeSelector." + NODE_LABEL.replace(".", "\\."),
            f"delivery.cacheHostPath={delivery_cache(real_node)}",
            "worker.backoffLimit=1",
            "worker.progressIntervalSeconds=1",
            "worker.resources.requests.cpu=100m",
            "controller.logFormat=console",
        ),
    )
    registry_host = pod_address(node_registry, real_node)
    _registry_auth_secret(control_plane, registry_host, node_registry_password)
    config = yaml.safe_load(find(docs, "ConfigMap", "ai-models-controller")["data"]["config.yaml"])
    config["controller"].update(
        {"metricsPort": 0, "healthPort": 0, "bindAddress": "127.0.0.1", "retryBaseSeconds": 0.5}
    )
    path = tmp_path_factory.mktemp("node-config") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def node_controller(
    control_plane: ControlPlane, node_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    work = tmp_path_factory.mktemp("node-controller")
    process = ControllerProcess(
        node_config, controller_kubeconfig(control_plane, work), work / "controller"
    )
    process.start()
    yield process
    process.stop()
