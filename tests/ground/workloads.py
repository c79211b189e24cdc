"""Deployments, ReplicaSets, DaemonSets and EndpointSlices for the real test node: a second
kube-controller-manager.

The control plane's controller manager runs only what the node emulator's tests need (Jobs and
friends). The chart's controller Deployment and delivery DaemonSet on the real node also need
the deployment, replicaset and daemonset controllers, and the API server finds the webhook's
pods through the EndpointSlices of its Service; this process runs just those four, with
per-controller service-account credentials, beside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.ground.controlplane import ControlPlane
from tests.ground.nodepki import issue_client_cert
from tests.ground.procs import Process

CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "daemonset-controller",
    "endpointslice-controller",
)
"""Also DaemonSets (the delivery endpoint) and EndpointSlices (the API server calls the
webhook Service at its endpoint addresses: ``--enable-aggregator-routing``)."""


@contextlib.contextmanager
def run_workload_controllers(plane: ControlPlane, work: Path) -> Iterator[Process]:
    cert = issue_client_cert(plane, work / "pki", "workload-kcm", "system:kube-controller-manager")
    kubeconfig = plane.write_kubeconfig(
        work / "workload-kcm.kubeconfig",
        {"client-certificate": str(cert.cert), "client-key": str(cert.key)},
    )
    process = Process(
        "kube-controller-manager-workloads",
        [
            str(plane.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--v=1",
        ],
        work,
    )
    try:
        yield process
    finally:
        process.stop()
