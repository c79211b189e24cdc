"""A real node for the test control plane: containerd + runc + kubelet v1.34.3 + kube-scheduler.

containerd (Debian's 1.6) runs with a config of this run: root, state and socket under the run's
directory, the pause image of ``hack/build-images.sh`` as sandbox image, the CNI configuration
of ``podnet.PodNetwork``, overlayfs, ``restrict_oom_score_adj`` (this VM refuses any negative
``oom_score_adj``, even for root; without it every sandbox fails to start), and image pulls sent
to a dead loopback proxy (images are imported, nothing is pulled from outside). The kubelet
registers a Node named by its address, with a client certificate ``system:node:<name>`` signed
by the control plane's CA, serves on the bridge's gateway address with anonymous auth +
AlwaysAllow (the API server has no kubelet client certificate; ``kubectl logs`` works), cgroupfs,
its root and pod logs under the run's directory. kube-scheduler binds pods. The control plane
runs no node-lifecycle controller, so nothing would lift the ``not-ready`` taint a new node
carries: the fixture removes it once the node is Ready. The host is recorded before
(``hostrestore.HostSnapshot``) and restored after, also when a test fails; processes are stopped
by PID, shims found by this run's socket. One node run per host at a time (a lock file).
Every real node carries ``NODE_LABEL`` (the chart's delivery DaemonSet selects it);
``netns_node`` starts a second node within this run from the same pieces.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.ground.controlplane import ControlPlane
from tests.ground.hostrestore import HostSnapshot
from tests.ground.nodepki import issue_client_cert, issue_serving_cert
from tests.ground.podnet import PodNetwork
from tests.ground.procs import Process, free_port

PAUSE_IMAGE = "localhost/ai-models-pause:1"
HOST_LOCK = Path("/run/lock/ai-models-real-node.lock")
"""Held while a node runs: two nodes at once would each restore the other's host changes."""
LOCK_WAIT_SECONDS = 1800.0
_HELD: list[Path] = []
NOT_READY_TAINT = "node.kubernetes.io/not-ready:NoSchedule-"
NODE_LABEL = "ai-models.test/node-kind=real"
"""Every real node carries it: the chart's delivery DaemonSet selects it (not the Nodes the node
emulator leaves behind)."""


@dataclass(frozen=True)
class RealNode:
    name: str
    plane: ControlPlane
    network: PodNetwork
    socket: Path
    work: Path
    snapshot: HostSnapshot

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def import_image(self, archive: Path) -> None:
        result = self.ctr("images", "import", str(archive))
        if result.returncode != 0:
            raise RuntimeError(f"ctr images import {archive}: {result.stderr}")


def _containerd_config(work: Path, network: PodNetwork) -> Path:
    root = work / "containerd"
    config = f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{root / "containerd.sock"}"
[ttrpc]
  address = "{root / "containerd.sock.ttrpc"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{network.conf_dir}"
    max_conf_num = 1
"""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.toml"
    path.write_text(config)
    return path


def start_containerd(
    work: Path, network: PodNetwork, wrapper: Sequence[str] = ()
) -> tuple[Process, Path]:
    """containerd of this run; ``wrapper`` (an argv prefix) runs it in other namespaces."""
    config = _containerd_config(work, network)
    socket = config.parent / "containerd.sock"
    # Every image is imported; a pull (a pod of another suite's image) must not leave the
    # machine: registries are reached only through a proxy on a closed loopback port.
    blocked = "http://127.0.0.1:9"
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HTTP_PROXY": blocked,
           "HTTPS_PROXY": blocked, "NO_PROXY": ""}  # fmt: skip
    argv = [*wrapper, "containerd", "--config", str(config)]
    process = Process("containerd", argv, work, env=env)

    def answers() -> bool:
        probe = ["ctr", "--address", str(socket), "version"]
        return subprocess.run(probe, capture_output=True, check=False, timeout=5).returncode == 0

    process.wait_ready(answers, timeout=30)
    return process, socket


def _kubelet_config(
    plane: ControlPlane, work: Path, socket: Path, address: str, extra: dict[str, object]
) -> Path:
    serving = issue_serving_cert(plane, work / "pki", "kubelet-serving", address)
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": address,
        "port": free_port(),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": free_port(),
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{socket}",
        "podLogsDir": str(work / "pod-logs"),
        "resolvConf": str(_empty_resolv_conf(work)),
        "evictionHard": {
            "memory.available": "1%",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
        "serializeImagePulls": False,
        **extra,
    }
    path = work / "kubelet-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _empty_resolv_conf(work: Path) -> Path:
    path = work / "resolv.conf"  # no cluster DNS and no host resolver: pods use addresses
    path.write_text("")
    return path


def start_kubelet(
    plane: ControlPlane,
    work: Path,
    name: str,
    socket: Path,
    *,
    wrapper: Sequence[str] = (),
    server: str | None = None,
    extra: dict[str, object] | None = None,
) -> Process:
    """The kubelet of node ``name`` (also its address); ``wrapper`` runs it in other namespaces,
    ``server`` is the API server's URL as seen from there, ``extra`` more configuration."""
    cert = issue_client_cert(plane, work / "pki", "kubelet", f"system:node:{name}", "system:nodes")
    kubeconfig = plane.write_kubeconfig(
        work / "kubelet.kubeconfig",
        {"client-certificate": str(cert.cert), "client-key": str(cert.key)},
    )
    if server is not None:
        written = yaml.safe_load(kubeconfig.read_text())
        written["clusters"][0]["cluster"]["server"] = server
        kubeconfig.write_text(yaml.safe_dump(written))
    config = _kubelet_config(plane, work, socket, name, extra or {})
    return Process(
        f"kubelet-{name}",
        [
            *wrapper,
            str(plane.bin_dir / "kubelet"),
            f"--config={config}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={work / 'kubelet'}",
            f"--cert-dir={work / 'kubelet-pki'}",
            f"--hostname-override={name}",
            f"--node-ip={name}",
            f"--node-labels={NODE_LABEL}",
            "--v=1",
        ],
        work,
    )


def _start_scheduler(plane: ControlPlane, work: Path) -> Process:
    cert = issue_client_cert(plane, work / "pki", "scheduler", "system:kube-scheduler")
    kubeconfig = plane.write_kubeconfig(
        work / "scheduler.kubeconfig",
        {"client-certificate": str(cert.cert), "client-key": str(cert.key)},
    )
    return Process(
        "kube-scheduler",
        [
            str(plane.bin_dir / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--v=1",
        ],
        work,
    )


def node_ready(plane: ControlPlane, name: str) -> bool:
    result = plane.kubectl_run(
        "get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    )
    return result.stdout.strip() == "True"


def _shims_of(socket: Path) -> list[int]:
    """PIDs of the containerd shims serving this run's containerd (by their ``-address``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"-address" in argv and str(socket).encode() in argv:
                pids.append(int(entry.name))
    return pids


def processes_of_run(work: Path, socket: Path) -> list[int]:
    """Live processes whose command line names this run's directory or socket."""
    marker = str(work).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return sorted(set(found) | set(_shims_of(socket)))


def drain(node: RealNode) -> None:
    """Pods deleted through the API, so the kubelet stops their sandboxes (CNI DEL) itself."""
    node.plane.kubectl_run("delete", "pods", "-A", "--field-selector", f"spec.nodeName={node.name}",
                           "--force", "--grace-period=0", "--wait=false")  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not node.ctr("tasks", "ls", "-q").stdout.strip():
            return
        time.sleep(0.5)


def stop_runtime(containerd: Process, socket: Path) -> None:
    ctr = ["ctr", "--address", str(socket), "-n", "k8s.io", "tasks"]
    listed = subprocess.run([*ctr, "ls", "-q"], capture_output=True, text=True, timeout=30)
    for task in listed.stdout.split():
        subprocess.run([*ctr, "kill", "-s", "SIGKILL", task], capture_output=True, timeout=30)
        subprocess.run([*ctr, "rm", "-f", task], capture_output=True, timeout=30)
    containerd.stop()
    for pid in _shims_of(socket):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run_all(steps: list[Callable[[], object]]) -> None:
    """Runs every teardown step even when one fails; raises the first failure at the end."""
    errors: list[BaseException] = []
    for step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the host must be restored regardless
            errors.append(error)
    if errors:
        raise errors[0]


@contextlib.contextmanager
def run_node(plane: ControlPlane, work: Path) -> Iterator[RealNode]:
    """Starts the pod network, containerd, a kubelet and kube-scheduler; restores the host after.

    The node is named by its address (the bridge's gateway): the API server reaches a kubelet
    (``kubectl logs``) at the node's Hostname address first, and a name would be looked up in the
    host's DNS. The images are not imported here: ``images.import_images`` does it.
    """
    with _host_lock():
        yield from _run_node(plane, work)


def host_lock_held() -> bool:
    """Whether a node run of this process holds the host lock (a second node joins that run)."""
    return bool(_HELD)


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    """One real node per host at a time (another test session may be running one)."""
    if _HELD:
        raise RuntimeError("a real test node already runs in this process; stop it first")
    with HOST_LOCK.open("a+") as handle:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another real test node holds {HOST_LOCK}") from None
                time.sleep(1)
        _HELD.append(HOST_LOCK)
        try:
            yield
        finally:
            _HELD.clear()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_node(plane: ControlPlane, work: Path) -> Iterator[RealNode]:
    snapshot = HostSnapshot.record()
    network = PodNetwork(work)
    name = network.gateway
    processes: list[Process] = []
    runtime: tuple[Process, Path] | None = None
    node: RealNode | None = None
    try:
        network.create(api_port=int(plane.url.rsplit(":", 1)[1]))
        runtime = start_containerd(work, network)
        node = RealNode(name, plane, network, runtime[1], work, snapshot)
        kubelet = start_kubelet(plane, work, name, runtime[1])
        processes.append(kubelet)
        kubelet.wait_ready(lambda: node_ready(plane, name), timeout=60)
        plane.kubectl_run("taint", "nodes", name, NOT_READY_TAINT)
        processes.append(_start_scheduler(plane, work))
        yield node
    finally:
        steps: list[Callable[[], object]] = []
        if node is not None:
            steps.append(functools.partial(drain, node))
        steps += [process.stop for process in reversed(processes)]
        if runtime is not None:
            steps.append(functools.partial(stop_runtime, *runtime))
        steps += [
            network.close,
            functools.partial(snapshot.restore, work),
            functools.partial(plane.kubectl_run, "delete", "node", name, "--wait=false"),
        ]
        run_all(steps)
