"""The pod network of the real test node: a bridge of this run alone, nothing leaves the machine.

Pods get an address on a per-run Linux bridge (CNI ``bridge`` + ``host-local``, ``ipMasq`` off;
``portmap`` for hostPorts on the node address) and a route to the bridge's gateway address and to
the API server's ClusterIP, nothing else. The servers of the test ground listen on 127.0.0.1; a
NAT chain of this run (``AIM-NODE-<id>``) forwards a pod's connection to ``<gateway>:<port>`` to
``127.0.0.1:<port>`` for the ports the fixture exposes, and ``<ClusterIP>:443`` to the API server
(there is no kube-proxy), with ``route_localnet`` on the bridge so the kernel accepts the
loopback destination. The same rule in OUTPUT lets host processes (the controller) use the
gateway address too, so one address works for both. FORWARD accepts pod to pod on the bridge and
drops anything else entering or leaving it: pods reach each other and the host's loopback
servers, nothing beyond. ``close()`` deletes the rules and the bridge.

A node in a network namespace of its own (``netns_node``) builds the same bridge, conflist and
FORWARD rules inside that namespace (``create_behind``: every command through ``nsenter``), with
no NAT chain of its own: its pods' routes lead to the host's addresses through the namespace's
uplink, where the first network's chain forwards them.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

API_CLUSTER_IP = "10.0.0.1"
"""The ``kubernetes`` Service's address in the control plane's service range 10.0.0.0/24."""


def run(*argv: str) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


def free_network(second: int, prefix: int, what: str) -> ipaddress.IPv4Network:
    """A ``10.<second>.x.0/<prefix>`` that no address or route of this host uses."""
    used = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    used += subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    for _ in range(64):
        third = secrets.randbelow(254) + 1
        if f"10.{second}.{third}." not in used:
            return ipaddress.IPv4Network(f"10.{second}.{third}.0/{prefix}")
    raise RuntimeError(f"no free 10.{second}.x.0/{prefix} for {what}")


class PodNetwork:
    def __init__(self, work: Path, netns: Path | None = None) -> None:
        self.netns = netns
        """The network namespace the bridge lives in (its bind-mounted file); None: the host's."""
        run_id = secrets.token_hex(3)
        self.bridge = f"aim{run_id}"
        self.chain = f"AIM-NODE-{run_id.upper()}"
        self.subnet = free_network(213, 24, "the test node's bridge")
        self.gateway = str(next(self.subnet.hosts()))
        self.conf_dir = work / "cni" / "net.d"
        self._ipam_dir = work / "cni" / "ipam"
        self._hooks: list[tuple[str, ...]] = []
        self._created = False

    def _cmd(self, *argv: str) -> tuple[str, ...]:
        """``argv`` as run in this network's namespace."""
        return ("nsenter", f"--net={self.netns}", *argv) if self.netns else argv

    def create(self, api_port: int) -> None:
        self._bridge_up()
        Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet").write_text("1")
        run("iptables", "-t", "nat", "-N", self.chain)
        self._hook(
            ("-t", "nat", "PREROUTING", "-i", self.bridge, "-j", self.chain),
            ("-t", "nat", "OUTPUT", "-d", self.gateway, "-j", self.chain),
            *self._forward_hooks(()),
        )
        self._dnat(API_CLUSTER_IP, 443, api_port)
        self._write_conflist(())

    def create_behind(self, uplink: str, routes: Sequence[str]) -> None:
        """The bridge in this network's namespace: pods route ``routes`` (CIDRs: the host's
        addresses) and the ClusterIP to the bridge, the namespace forwards them out of
        ``uplink`` (and answers back in), nothing else passes."""
        self._bridge_up()
        self._hook(*self._forward_hooks((uplink,)))
        self._write_conflist(routes)

    def _bridge_up(self) -> None:
        run(*self._cmd("ip", "link", "add", self.bridge, "type", "bridge"))
        self._created = True
        address = f"{self.gateway}/{self.subnet.prefixlen}"
        run(*self._cmd("ip", "addr", "add", address, "dev", self.bridge))
        run(*self._cmd("ip", "link", "set", self.bridge, "up"))

    def _forward_hooks(self, uplinks: Sequence[str]) -> list[tuple[str, ...]]:
        """Inserted in this order, so the last is first: pod to pod on this bridge (a hostPort
        is DNATed to the serving pod's address; with br_netfilter the bridged reply passes
        FORWARD too) and to and from each uplink are accepted, the rest in or out dropped."""
        pairs = [*((self.bridge, u) for u in uplinks), *((u, self.bridge) for u in uplinks)]
        pairs.append((self.bridge, self.bridge))
        return [
            ("-t", "filter", "FORWARD", "-i", self.bridge, "-j", "DROP"),
            ("-t", "filter", "FORWARD", "-o", self.bridge, "-j", "DROP"),
            *(("-t", "filter", "FORWARD", "-i", i, "-o", o, "-j", "ACCEPT") for i, o in pairs),
        ]

    def _hook(self, *hooks: tuple[str, ...]) -> None:
        for hook in hooks:
            run(*self._cmd("iptables", hook[0], hook[1], "-I", *hook[2:]))
            self._hooks.append(hook)

    def expose(self, port: int) -> str:
        """Makes ``127.0.0.1:<port>`` reachable from pods (and the host) as ``<gateway>:<port>``."""
        self._dnat(self.gateway, port, port)
        return f"{self.gateway}:{port}"

    def _dnat(self, address: str, port: int, to_port: int) -> None:
        run("iptables", "-t", "nat", "-A", self.chain, "-d", address, "-p", "tcp", "--dport",
             str(port), "-j", "DNAT", "--to-destination", f"127.0.0.1:{to_port}")  # fmt: skip

    def _write_conflist(self, routes: Sequence[str]) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": "ai-models-test",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": False,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self._ipam_dir),
                        "ranges": [[{"subnet": str(self.subnet), "gateway": self.gateway}]],
                        "routes": [
                            {"dst": cidr, "gw": self.gateway}
                            for cidr in (f"{API_CLUSTER_IP}/32", *routes)
                        ],
                    },
                },
                # hostPorts (the delivery DaemonSet): DNAT chains CNI-HOSTPORT-*/CNI-DN-*, removed
                # per pod on CNI DEL; the top chains are removed by hostrestore at teardown.
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            ],
        }
        (self.conf_dir / "10-ai-models-test.conflist").write_text(json.dumps(conflist, indent=2))

    def close(self) -> None:
        for hook in reversed(self._hooks):
            delete = self._cmd("iptables", hook[0], hook[1], "-D", *hook[2:])
            subprocess.run(delete, capture_output=True)
        self._hooks.clear()
        if self.netns is None:
            for flag in ("-F", "-X"):
                subprocess.run(["iptables", "-t", "nat", flag, self.chain], capture_output=True)
        if self._created:
            subprocess.run(self._cmd("ip", "link", "del", self.bridge), capture_output=True)
            self._created = False
