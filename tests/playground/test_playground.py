"""The README's "Try the whole product" commands, end to end, as a user types them: the
playground up in offline mode, the Hugging Face sample applied and Ready, the worker's log read
with ``kubectl logs job/…``, the playground down — and then nothing of it left running (no
recorded process, no process naming its state directory) and nothing mounted under its state
directory. Needs root and the cached control plane, like the end-to-end suite."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "model-huggingface.yaml"
MODEL = "all-minilm-l6-v2"  # the sample's name
SYSTEM = "d8-ai-models"


def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _running(record: dict[str, Any]) -> bool:
    """The recorded process (PID and start time: never a reused PID) exists and is not a zombie
    (an exited process its new parent, init, has not collected yet)."""
    try:
        fields = Path(f"/proc/{record['pid']}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[19]) == record["start"] and fields[0] != "Z"


def _processes_naming(directory: Path) -> list[str]:
    """Processes whose command line or working directory is under ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(directory) in argv or cwd.startswith(str(directory)):
            found.append(f"{entry.name}: {argv}")
    return found


def _mounts_under(directory: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == str(directory) or p.startswith(f"{directory}/")]


def _wait_ready(kubectl: list[str], env: dict[str, str], timeout: float = 240.0) -> str:
    deadline, phase = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        got = _run([*kubectl, "get", "model", MODEL, "-o", "jsonpath={.status.phase}"], env, 30)
        phase = got.stdout.strip()
        if phase in ("Ready", "Failed"):
            return phase
        time.sleep(1)
    return phase


def _up(state: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """``up --offline`` (twice: the second is a no-op); the processes it records."""
    started = time.monotonic()
    up = _run(["hack/playground.sh", "up", "--offline"], env, 400)
    assert up.returncode == 0, up.stdout + up.stderr
    print(f"playground up in {time.monotonic() - started:.1f} s")
    assert f"export KUBECONFIG={state}/kubeconfig" in up.stdout
    supervisor = json.loads((state / "supervisor.json").read_text())
    ready = json.loads((state / "ready.json").read_text())
    names = sorted(p["name"] for p in ready["processes"])
    assert names == sorted(["etcd", "kube-apiserver", "kube-controller", "docker-registry",
                            "ai-models-contr", "ai-models-deliv"]), names  # fmt: skip
    again = _run(["hack/playground.sh", "up", "--offline"], env, 120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((state / "supervisor.json").read_text()) == supervisor
    return [supervisor, *ready["processes"]]


def _user_env(state: Path, env: dict[str, str]) -> dict[str, str]:
    """What ``eval "$(hack/playground.sh env)"`` sets."""
    exports = _run(["hack/playground.sh", "env"], env, 30)
    assert (
        exports.stdout == f"export KUBECONFIG={state}/kubeconfig\nexport PATH={state}/bin:$PATH\n"
    )
    return {**env, "KUBECONFIG": f"{state}/kubeconfig", "PATH": f"{state}/bin:{env['PATH']}"}


def _apply_sample_and_read_log(env: dict[str, str]) -> None:
    nodes = _run(["kubectl", "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"], env, 30)
    assert nodes.stdout == "playground-node-1", nodes.stderr
    applied = _run(["kubectl", "apply", "-f", str(SAMPLE)], env, 60)
    assert applied.stdout == f"model.ai.deckhouse.io/{MODEL} created\n", applied.stderr
    assert _wait_ready(["kubectl"], env) == "Ready"
    uid = _run(["kubectl", "get", "model", MODEL, "-o", "jsonpath={.metadata.uid}"], env, 30)
    job = f"job/prepare-{uid.stdout}"
    logs = _run(["kubectl", "logs", "-n", SYSTEM, job], env, 60)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert any(" info  transfer " in line and " MiB" in line for line in lines), logs.stdout
    assert " info  published reference=" in logs.stdout
    # The emulated kubelet's endpoint honours the query kubectl sends (tailLines).
    tail = _run(["kubectl", "logs", "-n", SYSTEM, job, "--tail=1"], env, 60)
    assert tail.stdout == lines[-1] + "\n", tail.stderr


def test_readme_playground_commands_end_to_end(tmp_path: Path) -> None:
    state = tmp_path / "playground"
    env = {**os.environ, "AI_MODELS_PLAYGROUND_DIR": str(state)}
    recorded: list[dict[str, Any]] = []
    try:
        recorded = _up(state, env)
        _apply_sample_and_read_log(_user_env(state, env))
    finally:
        down = _run(["hack/playground.sh", "down"], env, 300)
    assert (down.returncode, down.stdout) == (0, "the playground is stopped\n"), down.stderr
    assert [r for r in recorded if _running(r)] == []
    assert _processes_naming(state) == []
    assert _mounts_under(state) == []
    assert not (state / "ready.json").exists()
    status = _run(["hack/playground.sh", "status"], env, 30)
    assert (status.returncode, status.stdout) == (
        3,
        f"the playground is not running (state: {state})\n",
    )
