"""A second real node beside the first one's run, in network and mount namespaces of its own, as a
second machine would be.

Why a namespace: the chart's delivery DaemonSet serves on a hostPort, and CNI ``portmap`` DNATs a
hostPort on every local address of the network namespace it runs in; two nodes in the host's
namespace would send each other's pods to whichever delivery pod's rule came first. Node 2 has:

- a network namespace, joined to the host by a veth pair (host side ``A`` = 10.214.x.1/30,
  node side ``B`` = …2/30) and pinned by a file of its run (not ``ip netns add``: that
  bind-mounts ``/run/netns`` on itself and so stacks a second mount on each of the first node's
  pod namespaces there, which its containerd then cannot remove: EBUSY). The node is named by
  ``B`` and its kubelet serves there (the API server's ``kubectl logs`` goes over the veth);
  the host routes node 2's pod subnet via ``B``, so it reads those pods' addresses as it reads
  node 1's;
- in it, routes only to the first node's gateway address (where the fixtures expose the test
  servers) and to the ``kubernetes`` ClusterIP, both via ``A``; its pods route those and the
  link's /30 (the host talks to them from ``A``) to their bridge. On the host, PREROUTING from
  the veth jumps to the first network's NAT chain (``<gateway>:<port>`` → 127.0.0.1, and
  10.0.0.1:443 → the API server, which node 2's kubelet uses too: 10.0.0.1 is in the API
  server's certificate), with ``route_localnet`` on the veth; FORWARD drops whatever the host
  would pass on from or to it: nothing leaves the machine;
- its own bridge, conflist and FORWARD rules inside it (``PodNetwork.create_behind``), so its
  hostPorts are DNATed there only;
- a mount namespace shared by its containerd and kubelet (the runtime must see the kubelet's
  volume mounts), a slave of the host's, where directories of the run are bound over
  ``PRIVATE_DIRS`` and the paths the caller names (the delivery cache's hostPath): the second
  machine's own disk. Nothing mounted there shows on the host; it goes with its last process;
- a ``cgroupRoot`` of its own (``/aim-<id>-n2`` in every hierarchy, cgroupfs), so neither
  kubelet removes the other's pod cgroups as orphans;
- the taint ``ai-models.test/second-node:NoSchedule`` from its registration: only pods that
  tolerate it land there.

It runs within the first node's run (its host lock). Teardown deletes the Node first (so the
DaemonSet controller stops placing a pod there), drains it, stops the processes, deletes the
veth pair (its routes with it), the host's rules, the namespace's file and the cgroups;
``SecondNode.leftovers()`` lists what is still there.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.ground.hostrestore import mounts_under, remove_cgroup
from tests.ground.images import BuiltImages, import_images
from tests.ground.node import (
    NOT_READY_TAINT,
    RealNode,
    drain,
    host_lock_held,
    node_ready,
    processes_of_run,
    run_all,
    start_containerd,
    start_kubelet,
    stop_runtime,
)
from tests.ground.podnet import API_CLUSTER_IP, PodNetwork, free_network, run

SECOND_NODE_TAINT = "ai-models.test/second-node"
PRIVATE_DIRS = (
    Path("/var/lib/kubelet"),  # device-plugins/kubelet.sock is there whatever the root dir
    Path("/var/log/containers"),
    Path("/run/containerd"),  # the runc shims' state and sockets
    Path("/run/netns"),  # the pods' network namespaces
    Path("/var/lib/cni"),  # CNI results
)
CGROUPS = Path("/sys/fs/cgroup")


class Uplink:
    """The network namespace, its veth pair to the host, routes and the host's rules for it."""

    def __init__(self, run_id: str, first: PodNetwork, work: Path) -> None:
        self.name = f"aim-{run_id}-n2"
        self.netns = work / "netns"
        self.host_if, self.node_if = f"aim{run_id}h", f"aim{run_id}n"
        link = free_network(214, 30, "the second node's link")
        self.host_address, self.node_address = (str(a) for a in link.hosts())
        self.link = link
        self.first = first
        self.hooks = (
            ("-t", "nat", "PREROUTING", "-i", self.host_if, "-j", first.chain),
            ("-t", "filter", "FORWARD", "-i", self.host_if, "-j", "DROP"),
            ("-t", "filter", "FORWARD", "-o", self.host_if, "-j", "DROP"),
        )
        self._added: list[tuple[str, ...]] = []
        self._created = False

    def in_netns(self, *argv: str) -> tuple[str, ...]:
        return ("nsenter", f"--net={self.netns}", *argv)

    def create(self) -> None:
        bits = self.link.prefixlen
        self.netns.touch()
        self._created = True
        run("unshare", f"--net={self.netns}", "true")
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.node_if,
             "netns", str(self.netns))  # fmt: skip
        run("ip", "addr", "add", f"{self.host_address}/{bits}", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        # The first network's DNAT sends the veth's traffic to 127.0.0.1, and replies from there.
        Path(f"/proc/sys/net/ipv4/conf/{self.host_if}/route_localnet").write_text("1")
        inside = (
            ("ip", "addr", "add", f"{self.node_address}/{bits}", "dev", self.node_if),
            ("ip", "link", "set", self.node_if, "up"),
            ("ip", "link", "set", "lo", "up"),
            ("ip", "route", "add", f"{self.first.gateway}/32", "via", self.host_address),
            ("ip", "route", "add", f"{API_CLUSTER_IP}/32", "via", self.host_address),
            # /proc/sys/net is the writer's namespace's: forwarding and br_netfilter there.
            ("sh", "-ec", "echo 1 > /proc/sys/net/ipv4/ip_forward; "
             "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables"),
        )  # fmt: skip
        for argv in inside:
            run(*self.in_netns(*argv))
        for hook in self.hooks:
            run("iptables", hook[0], hook[1], "-I", *hook[2:])
            self._added.append(hook)

    def route_pods(self, subnet: ipaddress.IPv4Network) -> None:
        """The host reaches node 2's pods (their metrics) via the node's address."""
        run("ip", "route", "add", str(subnet), "via", self.node_address, "dev", self.host_if)

    def close(self) -> None:
        for hook in reversed(self._added):
            subprocess.run(["iptables", hook[0], hook[1], "-D", *hook[2:]], capture_output=True)
        self._added.clear()
        if self._created:
            # The pair goes now (the routes through it with it); the namespace with its file's
            # mount and the last of its processes, its bridge and rules with it.
            subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
            subprocess.run(["umount", str(self.netns)], capture_output=True)
            self.netns.unlink(missing_ok=True)
            self._created = False

    def leftovers(self) -> list[str]:
        found = [f"netns file {self.netns}"] if self.netns.exists() else []
        if Path(f"/sys/class/net/{self.host_if}").exists():
            found.append(f"link {self.host_if}")
        for hook in self.hooks:
            check = ["iptables", hook[0], hook[1], "-C", *hook[2:]]
            if subprocess.run(check, capture_output=True).returncode == 0:
                found.append(f"iptables {' '.join(hook)}")
        return found


def _cgroup_root(name: str) -> list[Path]:
    """``/<name>`` in every cgroup hierarchy (v1: one per controller; v2: the one)."""
    if (CGROUPS / "cgroup.procs").exists():
        return [CGROUPS / name]
    return [h / name for h in sorted(CGROUPS.iterdir()) if (h / "cgroup.procs").exists()]


def _make_cgroup(path: Path) -> None:
    """The kubelet refuses a cgroupRoot that does not exist; a v1 cpuset needs its CPUs and
    memory nodes before it takes a task."""
    path.mkdir()
    for knob in ("cpuset.cpus", "cpuset.mems"):
        if (path.parent / knob).exists() and not (path.parent / "cgroup.controllers").exists():
            (path / knob).write_text((path.parent / knob).read_text())


def _mount_wrapper(uplink: Uplink, binds: Sequence[tuple[Path, Path]]) -> list[str]:
    """An argv prefix: the node's network namespace, a new mount namespace (a slave of the
    host's: nothing mounted in it propagates back) with ``binds`` (source over target), then
    the command."""
    lines = [
        f"mkdir -p {shlex.quote(str(src))} {shlex.quote(str(dst))}\n"
        f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))}"
        for src, dst in binds
    ]
    script = "\n".join([*lines, 'exec "$@"'])
    return [*uplink.in_netns("unshare", "--mount", "--propagation", "slave"), "sh", "-ec", script,
            "sh"]  # fmt: skip


@dataclass(frozen=True)
class SecondNode:
    node: RealNode
    uplink: Uplink
    cgroups: tuple[Path, ...]
    seconds: dict[str, float]
    """How long each step of its start took."""

    def leftovers(self) -> list[str]:
        """What node 2 still holds on the host after it stopped; empty when all is gone."""
        found = self.uplink.leftovers()
        found += [f"cgroup {p}" for p in self.cgroups if p.exists()]
        found += [f"mount {p}" for p in mounts_under(self.node.work)]
        found += [f"pid {p}" for p in processes_of_run(self.node.work, self.node.socket)]
        return found


@contextlib.contextmanager
def run_second_node(
    first: RealNode, work: Path, images: BuiltImages, private: Sequence[Path] = ()
) -> Iterator[SecondNode]:
    """Starts node 2 beside ``first`` (whose run holds the host lock), with ``images`` imported
    before its kubelet starts (a DaemonSet's pod is placed there as soon as the Node exists);
    ``private`` are more host paths node 2 gets a directory of its own for."""
    if not host_lock_held():
        raise RuntimeError("the second node runs within a first node's run (its host lock)")
    run_id = secrets.token_hex(3)
    uplink = Uplink(run_id, first.network, work)
    network = PodNetwork(work, netns=uplink.netns)
    # Teardown, in this order, each step even when an earlier one fails.
    steps: list[Callable[[], object]] = [network.close, uplink.close]
    try:
        uplink.create()
        network.create_behind(uplink.node_if, (f"{first.network.gateway}/32", str(uplink.link)))
        uplink.route_pods(network.subnet)
        cgroups = _cgroup_root(uplink.name)
        steps += [functools.partial(remove_cgroup, path) for path in cgroups]
        for path in cgroups:
            _make_cgroup(path)
        seconds: dict[str, float] = {}
        node = _start(first, work, uplink, network, images=images, private=private,
                      steps=steps, seconds=seconds)  # fmt: skip
        yield SecondNode(node, uplink, tuple(cgroups), seconds)
    finally:
        run_all(steps)


def _start(
    first: RealNode,
    work: Path,
    uplink: Uplink,
    network: PodNetwork,
    *,
    images: BuiltImages,
    private: Sequence[Path],
    steps: list[Callable[[], object]],
    seconds: dict[str, float],
) -> RealNode:
    """containerd (the images imported) and the kubelet in node 2's namespaces, their teardown
    put first in ``steps`` as each starts, their times in ``seconds``."""
    plane, name = first.plane, uplink.node_address
    started = time.monotonic()
    binds = [(work / "host" / str(p).lstrip("/"), p) for p in [*PRIVATE_DIRS, *private]]
    containerd, socket = start_containerd(work, network, _mount_wrapper(uplink, binds))
    steps.insert(0, functools.partial(stop_runtime, containerd, socket))
    node = RealNode(name, plane, network, socket, work, first.snapshot)
    seconds["containerd"] = time.monotonic() - started
    started = time.monotonic()
    import_images(node, images)
    seconds["image import"] = time.monotonic() - started
    started = time.monotonic()
    kubelet = start_kubelet(
        plane,
        work,
        name,
        socket,
        wrapper=["nsenter", f"--target={containerd.popen.pid}", "--mount", "--net", "--"],
        server=f"https://{API_CLUSTER_IP}:443",
        extra={
            "cgroupRoot": f"/{uplink.name}",
            "registerWithTaints": [{"key": SECOND_NODE_TAINT, "effect": "NoSchedule"}],
        },
    )
    # The Node deleted first (the DaemonSet controller places no pod there again), its pods
    # deleted while the kubelet runs (it stops their sandboxes: CNI DEL), then the kubelet.
    steps[0:0] = [
        functools.partial(plane.kubectl_run, "delete", "node", name, "--wait=false"),
        functools.partial(drain, node),
        kubelet.stop,
    ]
    kubelet.wait_ready(lambda: node_ready(plane, name), timeout=60)
    plane.kubectl_run("taint", "nodes", name, NOT_READY_TAINT)
    seconds["kubelet to Ready"] = time.monotonic() - started
    return node
