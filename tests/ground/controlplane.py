"""A real, local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

Built from Go modules by ``hack/build-control-plane.sh`` (pinned versions, cached outside the
repository). Everything listens on 127.0.0.1 at free ports; certificates and the service-account
signing key are generated per run. The API server runs with ``--authorization-mode=Node,RBAC``:
the admin kubeconfig is a client certificate in ``system:masters``; other identities use
service-account tokens. The controller manager runs the Job, CronJob, garbage-collector,
namespace, service-account and TTL controllers, with per-controller service-account credentials.
No kubelet, no scheduler: pods are run by the node emulator of the tests that need it.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.ground.certs import CertificateAuthority, KeyPair, service_account_keys
from tests.ground.procs import Process, free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "build-control-plane.sh"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "ttl-after-finished-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)


def control_plane_binaries() -> Path:
    """Builds the binaries when missing (a no-op when cached) and returns their directory."""
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"building the control plane failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class ControlPlane:
    url: str
    kubeconfig: Path
    ca_cert: Path
    bin_dir: Path
    work_dir: Path

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    def kubectl_run(
        self, *args: str, stdin: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        cfg = kubeconfig or self.kubeconfig
        return subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(cfg), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def write_kubeconfig(self, path: Path, user: dict[str, str]) -> Path:
        """A kubeconfig for this cluster with the given user entry (token or client cert)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_cert)},
                }
            ],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def _https_ok(url: str, ca: Path, client: KeyPair) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(client.cert), str(client.key))
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return bool(response.status == 200)


def _start_etcd(bin_dir: Path, work: Path) -> tuple[Process, str]:
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    etcd = Process(
        "etcd",
        [
            str(bin_dir / "etcd"),
            "--name=local",
            f"--data-dir={work / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        work,
    )
    health = f"{client_url}/health"
    etcd.wait_ready(lambda: urllib.request.urlopen(health, timeout=2).status == 200)
    return etcd, client_url


def _start_apiserver(
    bin_dir: Path, work: Path, etcd_url: str, ca: CertificateAuthority, sa: KeyPair
) -> tuple[Process, str]:
    port = free_port()
    serving = ca.issue(
        "apiserver",
        "kube-apiserver",
        hosts=("127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default.svc"),
        server=True,
    )
    apiserver = Process(
        "kube-apiserver",
        [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            "--authorization-mode=Node,RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            # Webhook (and aggregated API) Services are called at an endpoint (pod) address from
            # their EndpointSlices: there is no kube-proxy to route a ClusterIP.
            "--enable-aggregator-routing=true",
            "--profiling=false",
            f"--cert-dir={work / 'apiserver-certs'}",
            "--v=1",
        ],
        work,
    )
    return apiserver, f"https://127.0.0.1:{port}"


def _start_controller_manager(
    bin_dir: Path, work: Path, kubeconfig: Path, ca: CertificateAuthority, sa: KeyPair
) -> Process:
    return Process(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={ca.cert}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            # Fast pod deletion after a Job finishes keeps tests quick; defaults are for real nodes.
            "--concurrent-job-syncs=5",
            "--v=1",
        ],
        work,
    )


@contextlib.contextmanager
def run_control_plane(work: Path) -> Iterator[ControlPlane]:
    """Starts etcd, kube-apiserver and kube-controller-manager; stops them all on exit."""
    bin_dir = control_plane_binaries()
    ca = CertificateAuthority(work / "pki")
    sa = service_account_keys(work / "pki")
    processes: list[Process] = []
    try:
        etcd, etcd_url = _start_etcd(bin_dir, work)
        processes.append(etcd)
        apiserver, url = _start_apiserver(bin_dir, work, etcd_url, ca, sa)
        processes.append(apiserver)
        admin = ca.issue("admin", "ai-models-test-admin", organization="system:masters")
        apiserver.wait_ready(lambda: _https_ok(f"{url}/readyz", ca.cert, admin), timeout=90)
        plane = ControlPlane(url, work / "admin.kubeconfig", ca.cert, bin_dir, work)
        plane.write_kubeconfig(
            plane.kubeconfig, {"client-certificate": str(admin.cert), "client-key": str(admin.key)}
        )
        kcm_cert = ca.issue("kcm", "system:kube-controller-manager")
        kcm_config = plane.write_kubeconfig(
            work / "kcm.kubeconfig",
            {"client-certificate": str(kcm_cert.cert), "client-key": str(kcm_cert.key)},
        )
        kcm = _start_controller_manager(bin_dir, work, kcm_config, ca, sa)
        processes.append(kcm)
        kcm.wait_ready(lambda: _default_service_account_exists(plane), timeout=60)
        yield plane
    finally:
        for process in reversed(processes):
            process.stop()


def _default_service_account_exists(plane: ControlPlane) -> bool:
    # The service-account controller creates it: proof that the controller manager works.
    result = plane.kubectl_run("get", "serviceaccount", "default", "-n", "default", "-o", "name")
    return result.returncode == 0
