"""The local playground (``make playground``, ``hack/playground.sh up|down|status|env``).

``up`` starts a supervisor in the background (``serve``, its own session) and returns once it
reports the ground ready; the supervisor owns every process of the ground
(``playground_ground.run_ground``) and stops them all on SIGTERM, which is what ``down`` sends.
Its state is one directory (``.playground/`` in the checkout, or ``$AI_MODELS_PLAYGROUND_DIR``):

- ``supervisor.json``: the supervisor's PID and start time (written first);
- ``ready.json``: written once the ground is ready: what runs (every child's PID and start time),
  the endpoints, the startup time; removed when the supervisor stops;
- ``kubeconfig``: the cluster admin's, for ``kubectl``; ``bin/kubectl``: the control plane's
  kubectl; ``supervisor.log``; ``run/``: the
  ground's files and logs (kept after ``down`` for reading, replaced by the next ``up``).

A process is identified by PID *and* start time (``/proc/<pid>/stat``), so a reused PID is never
taken for ours; nothing is ever found or stopped by name. ``down`` also stops the recorded
processes of a supervisor that died without stopping them, and detaches any mount left under
the state directory.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE = REPO / ".playground"
UP_TIMEOUT = 300.0
DOWN_TIMEOUT = 120.0
MNT_DETACH = 2


class PlaygroundError(RuntimeError):
    """A command cannot do what was asked; the message says why."""


def state_dir(given: str | None) -> Path:
    return Path(given or os.environ.get("AI_MODELS_PLAYGROUND_DIR") or DEFAULT_STATE).resolve()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(record: dict[str, Any]) -> bool:
    """The recorded process (``pid``, ``start``) still runs (not a zombie)."""
    pid = int(record["pid"])
    if start_time(pid) != record["start"]:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


def children(parent: int) -> list[dict[str, Any]]:
    """Direct children of ``parent``: PID, start time and command name."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, rest = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        if int(fields[1]) == parent:
            name = head.split("(", 1)[1]
            found.append({"pid": int(entry.name), "start": int(fields[19]), "name": name})
    return found


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.rename(path)


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory`` in this mount namespace."""
    prefix = str(directory)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


def supervisor(state: Path) -> dict[str, Any] | None:
    """The running supervisor's record, None when none runs."""
    record = read_json(state / "supervisor.json")
    return record if record is not None and alive(record) else None


def usage(state: Path) -> str:
    kubeconfig = state / "kubeconfig"
    return (
        f"The playground runs. Use it with:\n\n    export KUBECONFIG={kubeconfig}\n"
        f"    export PATH={state / 'bin'}:$PATH    # its kubectl (or use yours)\n"
        "    kubectl get nodes\n    kubectl apply -f samples/model-huggingface.yaml\n"
        "    kubectl get models -w\n\nStop it with `make playground-down`.\n"
    )


# -- up ---------------------------------------------------------------------------------------


def up(state: Path, serve_args: list[str]) -> int:
    if os.geteuid() != 0:
        raise PlaygroundError("the playground needs root: the node emulator mounts volumes in "
                              "private mount namespaces and runs pods as their users")  # fmt: skip
    started = time.monotonic()
    if supervisor(state) is None:
        stop_leftovers(state)
        _clean(state)
        _spawn(state, serve_args)
    ready = _wait_ready(state)
    if ready is None:
        tail = _tail(state / "supervisor.log")
        raise PlaygroundError(f"the playground did not start:\n{tail}")
    print(f"ready in {time.monotonic() - started:.1f} s (nodes: {', '.join(ready['nodes'])})")
    print(usage(state))
    return 0


def _clean(state: Path) -> None:
    for name in ("ready.json", "supervisor.json", "kubeconfig"):
        (state / name).unlink(missing_ok=True)
    for name in ("run", "bin"):
        shutil.rmtree(state / name, ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)


def _spawn(state: Path, serve_args: list[str]) -> None:
    log = (state / "supervisor.log").open("wb")
    argv = [sys.executable, "-m", "tests.ground.playground", "serve", "--state-dir", str(state)]
    subprocess.Popen(
        [*argv, *serve_args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        start_new_session=True,  # outlives this command; `down` stops it
    )
    log.close()


def _wait_ready(state: Path) -> dict[str, Any] | None:
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        ready = read_json(state / "ready.json")
        if ready is not None:
            return ready
        # Wait for the supervisor's first record before calling it dead.
        if (state / "supervisor.json").exists() and supervisor(state) is None:
            return None
        time.sleep(0.2)
    return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- down -------------------------------------------------------------------------------------


def down(state: Path) -> int:
    record = supervisor(state)
    if record is not None:
        os.kill(record["pid"], signal.SIGTERM)
        if not _wait_gone([record], DOWN_TIMEOUT):
            print("the supervisor did not stop: killing it and what it started", file=sys.stderr)
            os.kill(record["pid"], signal.SIGKILL)
            _wait_gone([record], 10)
    stop_leftovers(state)
    for point in sorted(mounts_under(state), reverse=True):
        _detach(point)
    for name in ("ready.json", "supervisor.json"):
        (state / name).unlink(missing_ok=True)
    print("the playground is stopped")
    return 0


def _wait_gone(records: list[dict[str, Any]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(r) for r in records):
            return True
        time.sleep(0.2)
    return not any(alive(r) for r in records)


def stop_leftovers(state: Path) -> None:
    """Stops the recorded processes a dead supervisor left running: each in its own process
    group (the ground starts them so), SIGTERM then SIGKILL, by PID."""
    ready = read_json(state / "ready.json") or {}
    left = [r for r in ready.get("processes", []) if alive(r)]
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for record in left:
            try:
                os.killpg(record["pid"], signum)
            except ProcessLookupError:
                continue
        if _wait_gone(left, 15):
            return


def _detach(point: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(point.encode(), MNT_DETACH) != 0:
        print(f"unmounting {point}: {os.strerror(ctypes.get_errno())}", file=sys.stderr)


# -- status, env ------------------------------------------------------------------------------


def status(state: Path) -> int:
    record = supervisor(state)
    ready = read_json(state / "ready.json")
    if record is None:
        print(f"the playground is not running (state: {state})")
        return 3
    if ready is None:
        print(f"the playground is starting (supervisor {record['pid']}, state: {state})")
        return 0
    print(f"the playground runs (supervisor {record['pid']}, state: {state})")
    for key in ("apiServer", "registry", "huggingFace", "ollama"):
        print(f"  {key}: {ready[key]}")
    print(f"  nodes: {', '.join(ready['nodes'])}")
    for process in children(record["pid"]):
        print(f"  pid {process['pid']:>7}  {process['name']}")
    print(f"  kubeconfig: {state / 'kubeconfig'}")
    return 0


def env(state: Path) -> int:
    """The exports for ``eval "$(hack/playground.sh env)"``: the kubeconfig and a ``bin/``
    with the control plane's kubectl (a kubectl of one's own works as well)."""
    print(f"export KUBECONFIG={state / 'kubeconfig'}")
    print(f"export PATH={state / 'bin'}:$PATH")
    return 0


# -- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hack/playground.sh", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "env", "serve"))
    parser.add_argument("--state-dir", help="default: $AI_MODELS_PLAYGROUND_DIR or .playground/")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="sources are the Hub emulator and a local Ollama-format registry (real small models)",
    )
    parser.add_argument(
        "--throttle",
        type=float,
        metavar="MIB_PER_S",
        help="offline: the Hub emulator sends files at this rate, so progress can be watched",
    )
    parser.add_argument("--nodes", type=int, default=1, help="emulated nodes (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state = state_dir(args.state_dir)
    if args.throttle is not None and not args.offline:
        print("--throttle applies to the Hub emulator: use it with --offline", file=sys.stderr)
        return 2
    serve_args = ["--nodes", str(args.nodes)]
    serve_args += ["--offline"] if args.offline else []
    serve_args += ["--throttle", str(args.throttle)] if args.throttle else []
    try:
        if args.command == "up":
            return up(state, serve_args)
        if args.command == "down":
            return down(state)
        if args.command == "status":
            return status(state)
        if args.command == "env":
            return env(state)
        from tests.ground.playground_ground import serve  # heavy imports: serve only

        return serve(state, offline=args.offline, throttle=args.throttle, nodes=args.nodes)
    except PlaygroundError as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
