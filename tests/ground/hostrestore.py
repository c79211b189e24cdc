"""What a real kubelet and containerd change on this host, recorded before the test node starts and
put back when it stops (also after a failed test).

The kubelet writes sysctls (``vm.overcommit_memory``, ``kernel.panic``, ``kernel.panic_on_oops``,
…), creates ``kubepods`` cgroups, iptables chains ``KUBE-*`` (v4 and v6, in whichever backend it
detects), ``/var/lib/kubelet/device-plugins`` and ``/var/log/containers``; containerd 1.6 writes
under ``/run/containerd``, network namespaces under ``/run/netns`` and CNI results under
``/var/lib/cni``; the bridge plugin turns on IP forwarding. ``HostSnapshot.record()`` takes the
values and listings first; ``restore()`` undoes what is new (unmounting everything under the run's
directory first) and ``leftovers()`` lists what still differs, which the fixture's own test
asserts is nothing.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
)
AS_FOUND = (
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/run/containerd"),
    Path("/run/netns"),
    Path("/var/lib/cni"),
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
IPTABLES = ("iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy")
TABLES = ("filter", "nat", "mangle")
OWN_PREFIXES = ("KUBE-", "AIM-NODE-", "CNI-")
"""Chains the kubelet, the node's pod network and the CNI ``portmap`` plugin (hostPorts) create;
only new ones are removed."""


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _listing(path: Path) -> frozenset[str] | None:
    if not path.is_dir():
        return None
    return frozenset(entry.name for entry in path.iterdir())


def _cgroup_dirs() -> frozenset[Path]:
    """Top-level directories of every cgroup hierarchy (v1 controllers or the v2 root)."""
    found: set[Path] = set()
    roots = [p for p in CGROUP_ROOT.iterdir() if p.is_dir()] if CGROUP_ROOT.is_dir() else []
    for root in [CGROUP_ROOT, *roots]:
        with contextlib.suppress(OSError):
            found.update(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    return frozenset(found)


def _iptables(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


def _chains(binary: str, table: str) -> frozenset[str]:
    listed = _iptables(binary, "-t", table, "-S")
    return frozenset(
        line.split()[1] for line in listed.stdout.splitlines() if line.startswith(("-N ", "-P "))
    )


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first."""
    prefix = str(directory.resolve())
    points: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def unmount_under(directory: Path) -> None:
    for _ in range(3):  # stacked mounts on one point come off one at a time
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


@dataclass(frozen=True)
class HostSnapshot:
    sysctls: dict[str, str]
    paths: dict[Path, frozenset[str] | None]
    """Entries of each directory as found; None: it did not exist."""
    chains: dict[tuple[str, str], frozenset[str]]
    cgroups: frozenset[Path]

    @classmethod
    def record(cls) -> HostSnapshot:
        sysctls = {
            name: _sysctl_path(name).read_text().strip()
            for name in SYSCTLS
            if _sysctl_path(name).exists()
        }
        chains = {
            (binary, table): _chains(binary, table)
            for binary in IPTABLES
            if shutil.which(binary)
            for table in TABLES
        }
        return cls(sysctls, {p: _listing(p) for p in AS_FOUND}, chains, _cgroup_dirs())

    def new_chains(self) -> dict[tuple[str, str], list[str]]:
        new: dict[tuple[str, str], list[str]] = {}
        for (binary, table), before in self.chains.items():
            added = sorted(c for c in _chains(binary, table) - before if c.startswith(OWN_PREFIXES))
            if added:
                new[(binary, table)] = added
        return new

    def new_cgroups(self) -> list[Path]:
        return sorted(_cgroup_dirs() - self.cgroups)

    def new_paths(self) -> list[Path]:
        new: list[Path] = []
        for path, before in self.paths.items():
            now = _listing(path)
            if now is None:
                continue
            if before is None:
                new.append(path)
            else:
                new.extend(path / name for name in sorted(now - before))
        return new

    def restore(self, run_dir: Path) -> None:
        """Undoes the node's changes; each step runs even when an earlier one fails."""
        unmount_under(run_dir)
        for path in self.new_paths():
            unmount_under(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for cgroup in self.new_cgroups():
            remove_cgroup(cgroup)
        for (binary, table), chains in self.new_chains().items():
            _remove_chains(binary, table, chains)
        for name, value in self.sysctls.items():
            with contextlib.suppress(OSError):
                _sysctl_path(name).write_text(value)

    def leftovers(self, run_dir: Path) -> list[str]:
        """Everything that still differs from the snapshot; empty when the host is restored."""
        found = [f"mount {p}" for p in mounts_under(run_dir)]
        found += [f"path {p}" for p in self.new_paths()]
        found += [f"cgroup {p}" for p in self.new_cgroups()]
        for (binary, table), chains in self.new_chains().items():
            found += [f"{binary} -t {table} chain {c}" for c in chains]
        for name, value in self.sysctls.items():
            now = _sysctl_path(name).read_text().strip()
            if now != value:
                found.append(f"sysctl {name}={now} (was {value})")
        return found


def remove_cgroup(top: Path) -> None:
    """Kills what still runs in a cgroup tree the node created, then removes it bottom-up."""
    tree = sorted(
        (p for p in [top, *top.rglob("*")] if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    )
    for directory in tree:
        with contextlib.suppress(OSError, ValueError):
            for pid in (directory / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    for directory in tree:
        for _ in range(50):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                subprocess.run(["sleep", "0.1"], check=False)


def _remove_chains(binary: str, table: str, chains: list[str]) -> None:
    """Deletes the rules that jump to the new chains, then flushes and deletes the chains."""
    doomed = set(chains)
    for line in _iptables(binary, "-t", table, "-S").stdout.splitlines():
        words = shlex.split(line)
        if len(words) > 2 and words[0] == "-A" and words[1] not in doomed:
            target = words[words.index("-j") + 1] if "-j" in words else None
            if target in doomed:
                _iptables(binary, "-t", table, "-D", *words[1:])
    for chain in chains:
        _iptables(binary, "-t", table, "-F", chain)
    for chain in chains:
        _iptables(binary, "-t", table, "-X", chain)
