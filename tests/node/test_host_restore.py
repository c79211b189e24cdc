"""The real node's teardown puts the host back: a node of its own is started, runs a pod, and
is stopped — normally, or by a test that raises; what it changed while running is gone
afterwards. (This module sorts first, so it runs before the package's node starts, and nodes
take a host-wide lock: the snapshot is of a host without any node.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import get_json, wait_for
from tests.e2e.helpers import apply
from tests.ground.controlplane import ControlPlane
from tests.ground.hostrestore import HostSnapshot
from tests.ground.images import BuiltImages
from tests.ground.node import PAUSE_IMAGE, processes_of_run, run_node


def probe_pod(node_name: str) -> dict[str, Any]:
    """A pod of the pause image on the given node: the runtime sets up a sandbox, a network
    namespace, a veth on the bridge and the pod's cgroups for it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "restore-probe", "namespace": "default"},
        "spec": {
            "containers": [{"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
            "nodeSelector": {"kubernetes.io/hostname": node_name},
            "terminationGracePeriodSeconds": 0,
        },
    }


def pod_phase(plane: ControlPlane) -> str:
    pod = get_json(plane, "pod", "restore-probe", "-n", "default")
    phase: str = (pod.get("status") or {}).get("phase", "")
    return phase


def test_a_stopped_node_leaves_the_host_as_it_found_it(
    control_plane: ControlPlane, node_images: BuiltImages, tmp_path: Path
) -> None:
    before = HostSnapshot.record()
    with run_node(control_plane, tmp_path) as node:
        node.import_image(node_images.directory / "pause.tar")
        apply(control_plane, probe_pod(node.name))

        wait_for(lambda: pod_phase(control_plane) == "Running", 60)
        changed = before.leftovers(tmp_path)
        live = processes_of_run(tmp_path, node.socket)
    # While it ran, the node changed the host the way a kubelet does (docs/testing.md) ...
    kinds = {entry.split()[0] for entry in changed}
    assert {"mount", "cgroup"} <= kinds, changed
    assert any(entry.endswith("chain KUBE-FIREWALL") for entry in changed), changed
    assert any(entry.startswith("sysctl vm.overcommit_memory=1") for entry in changed) or (
        before.sysctls["vm.overcommit_memory"] == "1"
    ), changed
    assert len(live) >= 3, live  # containerd, kubelet, a shim (and the pause processes)
    # ... and nothing of it is left.
    assert before.leftovers(tmp_path) == []
    assert processes_of_run(tmp_path, node.socket) == []


def fail_while_running(
    plane: ControlPlane, images: BuiltImages, work: Path, sockets: list[Path]
) -> None:
    with run_node(plane, work) as node:
        sockets.append(node.socket)
        node.import_image(images.directory / "pause.tar")
        apply(plane, probe_pod(node.name))
        wait_for(lambda: pod_phase(plane) == "Running", 60)
        raise RuntimeError("the test failed here")


def test_a_node_stopped_by_a_failing_test_leaves_the_host_as_it_found_it(
    control_plane: ControlPlane, node_images: BuiltImages, tmp_path: Path
) -> None:
    before = HostSnapshot.record()
    sockets: list[Path] = []
    with pytest.raises(RuntimeError, match=r"^the test failed here$"):
        fail_while_running(control_plane, node_images, tmp_path, sockets)
    assert before.leftovers(tmp_path) == []
    assert processes_of_run(tmp_path, sockets[0]) == []
