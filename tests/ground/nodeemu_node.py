"""The emulated node's own object: the ``Node`` (labels, taints, capacity, conditions) and its
``Lease`` in ``kube-node-lease``, kept fresh as a kubelet keeps them.

Capacity and allocatable are the host's (CPUs, memory, the work directory's disk, 110 pods).
The node has an ``InternalIP`` of 127.0.0.1 and no ``Hostname`` address (the API server would
otherwise look the node name up in DNS). Its kubelet port is 0 unless a ``KubeletLogServer``
(``nodeemu_logs``) serves ``kubectl logs`` for it; ``exec`` is never served, and tests read
``NodeEmulator.logs`` directly. A Node left by an earlier emulator of the same
name is taken over, its labels and taints replaced by this one's.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.ground.nodeemu_api import MERGE, ApiError, KubeApi
from tests.ground.nodeemu_status import HOST_IP, now

JSON = dict[str, Any]
NODES = "/api/v1/nodes"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
LEASE_SECONDS = 40
KUBELET_VERSION = "v1.34.3"  # the control plane's (hack/kube/go.mod)
MEMORY = ("KubeletHasSufficientMemory", "kubelet has sufficient memory available")
DISK = ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
PIDS = ("KubeletHasSufficientPID", "kubelet has sufficient PID available")


def host_capacity(work_dir: Path) -> dict[str, str]:
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{pages * page_size // 1024}Ki",
        "ephemeral-storage": f"{shutil.disk_usage(work_dir).total // 1024}Ki",
        "pods": "110",
    }


def _condition(kind: str, status: str, reason: str, message: str, beat: str, since: str) -> JSON:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": beat,
        "lastTransitionTime": since,
    }


class NodeObject:
    def __init__(
        self,
        api: KubeApi,
        name: str,
        labels: Mapping[str, str],
        taints: Sequence[JSON],
        capacity: Mapping[str, str],
        kubelet_port: int = 0,
    ) -> None:
        self._api = api
        self.name = name
        self.labels = dict(labels)
        self.taints = list(taints)
        self.capacity = dict(capacity)
        self.kubelet_port = kubelet_port
        self._uid = ""
        self._ready = ""
        self._ready_since = now()

    def register(self) -> None:
        """Creates the Node, or takes over an existing one, Ready, with its Lease."""
        spec = {"unschedulable": False, "taints": self.taints or None}
        existing = self._api.get(f"{NODES}/{self.name}")
        if existing is None:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels},
                "spec": {k: v for k, v in spec.items() if v},
            }
            existing = self._api.request("POST", NODES, body=body)
        else:
            stale = existing["metadata"].get("labels") or {}
            labels: dict[str, str | None] = {k: None for k in stale if k not in self.labels}
            patch = {"metadata": {"labels": {**labels, **self.labels}}, "spec": spec}
            self._api.patch(f"{NODES}/{self.name}", patch, content_type=MERGE)
        self._uid = str(existing["metadata"]["uid"])
        self.heartbeat()

    def heartbeat(self) -> None:
        self._renew_lease()
        self._post_status("True", "KubeletReady", "kubelet is posting ready status")

    def mark_stopped(self) -> None:
        """Ready ``Unknown``: what the node-lifecycle controller would conclude (it does not run
        here), so that nobody mistakes a stopped emulator's node for a live one."""
        self._post_status("Unknown", "NodeStatusUnknown", "Node emulator stopped.")

    def _post_status(self, ready: str, reason: str, message: str) -> None:
        beat = now()
        if ready != self._ready:
            self._ready, self._ready_since = ready, beat
        since = self._ready_since
        status = {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                _condition("MemoryPressure", "False", *MEMORY, beat, since),
                _condition("DiskPressure", "False", *DISK, beat, since),
                _condition("PIDPressure", "False", *PIDS, beat, since),
                _condition("Ready", ready, reason, message, beat, since),
            ],
            "addresses": [{"type": "InternalIP", "address": HOST_IP}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": os.uname().release,
                "osImage": "ai-models node emulator",
                "containerRuntimeVersion": "emulated://1",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        self._api.patch(f"{NODES}/{self.name}/status", {"status": status})

    def _renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
        }
        try:
            self._api.patch(f"{LEASES}/{self.name}", {"spec": spec}, content_type=MERGE)
        except ApiError as error:
            if error.code != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self._uid}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "ownerReferences": [owner]},
                "spec": spec,
            }
            self._api.request("POST", LEASES, body=lease)
