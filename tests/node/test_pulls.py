"""The real node never fetches an image from outside: everything it runs is imported, and a pod
of any other image fails to pull at the dead loopback proxy containerd is given."""

from __future__ import annotations

from tests.e2e.conftest import get_json, wait_for
from tests.e2e.helpers import apply
from tests.ground.controlplane import ControlPlane
from tests.ground.node import RealNode


def test_an_image_that_was_not_imported_is_not_fetched_from_outside(
    control_plane: ControlPlane, real_node: RealNode
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pull-probe", "namespace": "default"},
        "spec": {
            "containers": [{"name": "c", "image": "ai-models-not-imported:1"}],
            "nodeSelector": {"kubernetes.io/hostname": real_node.name},
            "terminationGracePeriodSeconds": 0,
        },
    }
    apply(control_plane, pod)

    def pull_failure() -> str:
        events = get_json(
            control_plane, "events", "-n", "default", "--field-selector",
            "involvedObject.name=pull-probe,reason=Failed",
        )  # fmt: skip
        messages = [e["message"] for e in events.get("items", [])]
        return next((m for m in messages if m.startswith("Failed to pull image")), "")

    message = wait_for(pull_failure, 60)
    control_plane.kubectl_run("delete", "pod", "pull-probe", "-n", "default", "--wait=false")
    assert "docker.io/library/ai-models-not-imported:1" in message
    assert "proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused" in message
