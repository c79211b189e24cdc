"""The models and the three clients of ``bench_peers.py``: what each tool is given and run as.

A model is a directory holding exactly the files the worker would push (``inspect --json`` of
the source decides the set; the files are hard links to the originals, so every tool reads the
same bytes from the same page cache). Each tool gets a command line per push and per pull:

- ours: ``ai-models-worker prepare SOURCE --to HOST/bench/NAME:t`` with
  ``AI_MODELS_REGISTRY_INSECURE=true`` (plain HTTP), ``materialize HOST/…@DIGEST --to DIR``;
- oras: ``oras push --plain-http HOST/bench/NAME:t --artifact-type … PATH:MEDIATYPE…`` run in
  the model directory (oras names layers by their relative paths), ``oras pull --plain-http``;
- modctl: ``modctl build`` of a Modelfile (MODEL/CONFIG/DOC/CODE lines, one per file) into its
  own storage directory, then ``modctl push --plain-http``: two processes, both counted.

The ModelPack media types are written out here rather than imported from the worker: the
benchmark states what the peers are asked to push, independently of the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / ".venv" / "bin" / "ai-models-worker"
"""The worker under test; ``bench_peers.py --worker`` names another entry point (a launcher of
another checkout, to compare two versions on one machine)."""
PYTHON = REPO / ".venv" / "bin" / "python"
MIB = 1 << 20
GIB = 1 << 30

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
MEDIA_TYPES = {
    "weight": "application/vnd.cncf.model.weight.v1.raw",
    "config": "application/vnd.cncf.model.weight.config.v1.raw",
    "doc": "application/vnd.cncf.model.doc.v1.raw",
    "code": "application/vnd.cncf.model.code.v1.raw",
}
MODELFILE_DIRECTIVES = {"weight": "MODEL", "config": "CONFIG", "doc": "DOC", "code": "CODE"}


class ToolError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelFile:
    path: str
    role: str
    size: int


@dataclass(frozen=True)
class BenchModel:
    key: str
    """Short name, also the repository name: ``minilm``, ``smollm2-gguf``, ``synthetic-1g``."""
    label: str
    context: Path
    """The directory holding exactly the pushed files (oras and modctl run here)."""
    source: str
    """What ``prepare`` is given: the directory, or the single file."""
    files: tuple[ModelFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def worker_env(workspace: Path) -> dict[str, str]:
    """The caller's environment without anything that changes the worker, plus plain HTTP."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POD_", "AI_MODELS_", "HF_", "SOURCES_", "OLLAMA_", "DOCKER_"))
    }
    workspace.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "AI_MODELS_REGISTRY_INSECURE": "true",
            "AI_MODELS_WORKSPACE": str(workspace),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


# ---- the models --------------------------------------------------------------------------------


def inspect_files(source: str, env: dict[str, str]) -> tuple[ModelFile, ...]:
    """The files ``prepare`` would push, from ``ai-models-worker inspect --json``."""
    done = subprocess.run(
        [str(WORKER), "inspect", source, "--json"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ToolError(f"inspect {source}: {done.stderr[-2000:]}")
    listed = json.loads(done.stdout.strip().splitlines()[-1])["files"]
    return tuple(ModelFile(str(f["path"]), str(f["role"]), int(f["size"])) for f in listed)


def link_tree(root: Path, files: Sequence[ModelFile], context: Path) -> None:
    """Hard links (a copy across file systems) of ``files`` under ``root`` into ``context``."""
    for file in files:
        target = context / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(root / file.path, target)
        except OSError:
            shutil.copy2(root / file.path, target)


def stage_directory(
    key: str, label: str, root: Path, work: Path, env: dict[str, str]
) -> BenchModel:
    files = inspect_files(str(root), env)
    context = work / "models" / key
    link_tree(root, files, context)
    return BenchModel(key, label, context, str(context), files)


def stage_file(key: str, label: str, path: Path, work: Path, env: dict[str, str]) -> BenchModel:
    context = work / "models" / key
    files = inspect_files(str(path), env)
    link_tree(path.parent, files, context)
    return BenchModel(key, label, context, str(context / path.name), files)


# ---- the command lines -------------------------------------------------------------------------


def ours_push(model: BenchModel, host: str) -> list[str]:
    return [str(WORKER), "prepare", model.source, "--to", f"{host}/bench/{model.key}:t"]


def oras_push(oras: Path, model: BenchModel, host: str) -> list[str]:
    layers = [f"{f.path}:{MEDIA_TYPES[f.role]}" for f in model.files]
    push = [str(oras), "push", "--plain-http", f"{host}/bench/{model.key}:t"]
    # `env -C`: oras takes layer paths relative to its working directory (the titles).
    return ["env", "-C", str(model.context), *push, "--artifact-type", ARTIFACT_TYPE, *layers]


def write_modelfile(model: BenchModel, path: Path) -> Path:
    lines = [f"NAME {model.key}"]
    lines += [f"{MODELFILE_DIRECTIVES[f.role]} {f.path}" for f in model.files]
    path.write_text("\n".join(lines) + "\n")
    return path


def modctl_steps(modctl: Path, model: BenchModel, host: str, storage: Path) -> list[list[str]]:
    """``build`` then ``push``: the two commands a modctl user runs, in a fresh storage dir."""
    common = [str(modctl), "--storage-dir", str(storage), "--log-dir", str(storage / "logs")]
    common.append("--no-progress")
    modelfile = write_modelfile(model, storage.parent / f"{storage.name}.Modelfile")
    reference = f"{host}/bench/{model.key}:t"
    build = [*common, "build", "-f", str(modelfile), "-t", reference, str(model.context)]
    return [build, [*common, "push", "--plain-http", reference]]


def ours_pull(reference: str, out: Path) -> list[str]:
    return [str(WORKER), "materialize", reference, "--to", str(out)]


def oras_pull(oras: Path, reference: str, out: Path) -> list[str]:
    return [str(oras), "pull", "--plain-http", reference, "-o", str(out)]


def artifact_digest(stdout: str) -> str:
    """The manifest digest from the last JSON line ``prepare`` prints."""
    result = json.loads(stdout.strip().splitlines()[-1])
    digest = str(result["artifact"]["digest"])
    if not digest.startswith("sha256:"):
        raise ToolError(f"prepare printed no artifact digest: {result}")
    return digest


def tree_files(root: Path) -> dict[str, int]:
    """Relative path → size of the regular files under ``root`` (our state files left out)."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".ai-models")
    }


# ---- start-up and the hashing floor ------------------------------------------------------------


def help_seconds(runs: int) -> list[float]:
    """Wall seconds of ``ai-models-worker --help``, ``runs`` times (the first warms the cache)."""
    seconds = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([str(WORKER), "--help"], check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def import_offenders(module: str, top: int) -> dict[str, object]:
    """``python -X importtime`` of ``ai-models-worker --help`` (the entry point imports
    ``MODULE``, ``worker.cli``): its total, and the largest imports by cumulative time among those
    at most two levels below it (``[name, cumulative ms, self ms]``)."""
    done = subprocess.run(
        [str(PYTHON), "-X", "importtime", str(WORKER), "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows: list[tuple[str, int, int, int]] = []  # name, depth, self µs, cumulative µs
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((name.strip(), depth, int(self_us), int(cumulative_us)))
    top_level = [r for r in rows if r[0] == module]
    if not top_level:
        raise ToolError(f"{WORKER} --help did not import {module}")
    _, depth, _, total = top_level[0]
    # importtime prints a module after its imports, indented deeper: MODULE's imports are the
    # deeper rows right before its own; two levels below it at most.
    start = end = rows.index(top_level[0])
    while start > 0 and rows[start - 1][1] > depth:
        start -= 1
    near = [r for r in rows[start:end] if r[1] <= depth + 2]
    near.sort(key=lambda r: r[3], reverse=True)
    return {
        "total_ms": round(total / 1000, 1),
        "top": [[name, round(c / 1000, 1), round(s / 1000, 1)] for name, _, s, c in near[:top]],
    }


def hashing_floor(gib: int = 1, piece: int = 8 * MIB) -> dict[str, float]:
    """CPU seconds per GiB of ``hashlib.sha256`` over in-memory pieces, and of one copy of each
    piece (``bytes(memoryview)``): the least a client that hashes once and copies once spends."""
    buffer = os.urandom(64 * MIB)
    view = memoryview(buffer)
    rounds = gib * GIB // len(buffer)
    started = time.process_time()
    digest = hashlib.sha256()
    for _ in range(rounds):
        for offset in range(0, len(buffer), piece):
            digest.update(view[offset : offset + piece])
    hashed = time.process_time() - started
    started = time.process_time()
    for _ in range(rounds):
        for offset in range(0, len(buffer), piece):
            bytes(view[offset : offset + piece])
    copied = time.process_time() - started
    return {"sha256_cpu_s_per_gib": hashed / gib, "copy_cpu_s_per_gib": copied / gib}


def python_version() -> str:
    return sys.version.split()[0]
