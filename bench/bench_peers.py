"""Side by side with the Go peers: our worker, the oras CLI and modctl on the same files and the
same registry, in one run; prints wall time, ratios, CPU seconds and peak RSS per tool.

Runs from a clean checkout after one ``make test`` (it installs the venv, ``docker-registry``,
the real MiniLM and SmolLM2 models, and builds oras and modctl with ``hack/build-peers.sh``,
which this script calls again: it returns the cached binaries at once):

    make bench-peers
    .venv/bin/python bench/bench_peers.py [--repeat 3] [--quick] [--models minilm,…]
        [--skip-pull] [--skip-hf] [--work-dir DIR] [--json FILE] [--worker PATH]

What is measured (each figure the minimum wall time of ``--repeat`` runs, tools interleaved):

1. Push (``bench_peers_tools.py`` has the command lines): ours ``prepare DIR --to …``, ``oras
   push`` of the same files with the ModelPack media types, ``modctl build`` + ``modctl push``
   (both processes counted). Models: MiniLM (87 MiB, 11 files), SmolLM2 GGUF (98 MB), a
   synthetic Llama-style safetensors model of 1 GiB (one shard) and, unless ``--quick``, 4 GiB
   (4 shards). Every push goes into a fresh docker-registry with empty storage, deleted after.
2. Pull: ``materialize HOST/…@DIGEST --to DIR`` against ``oras pull`` of the same artifact
   (pushed once by us), and against ``oras pull`` + ``sync -f DIR`` (materialize makes its
   files durable, oras does not); files written to a fresh directory each time.
3. Start-up: ``ai-models-worker --help`` wall time, and ``python -X importtime`` of it (the
   entry point imports ``worker.cli``): the largest imports.
4. The floor: CPU seconds per GiB of ``hashlib.sha256`` and of one copy on this machine, beside
   our CPU seconds per GiB pushed.
5. Hub (emulator) → registry against the registry's raw ingest of the same bytes: the 1 GiB
   model served by ``tests/ground/hub.py``, measured by ``bench_prepare.py``'s own functions.

Wall, CPU (user + sys) and peak RSS of each process come from ``wait4`` in the small go-between
of ``bench_prepare_children.py`` (a child spawned from this larger process would inherit its
peak). The 1-minute load average is recorded at the start of each run: the machine is shared.
Needs ~3x the largest model of free disk (model, registry copy, modctl's local storage).
``--worker PATH``: another entry point to measure (e.g. a launcher of another checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import bench_peers_tools as tools  # noqa: E402
import bench_prepare  # noqa: E402
from bench_peers_report import render  # noqa: E402
from bench_prepare import fresh_registry, measure, run_prepare, run_raw, say, tree_bytes  # noqa: E402
from bench_prepare_model import PrehashedRepo, SyntheticModel, generate_model  # noqa: E402

from tests.ground.hub import run_hub  # noqa: E402
from tests.ground.models import locate_real_models  # noqa: E402

MIB, GIB = tools.MIB, tools.GIB
PUSH_TOOLS = ("ours", "oras", "modctl")
PULL_TOOLS = ("ours", "oras", "oras+sync")
"""``materialize`` makes the files durable (``syncfs``) before it reports them; ``oras pull``
leaves them to the kernel's writeback: ``oras+sync`` adds ``sync -f DIR`` to compare like with
like."""


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    load1: float
    registry_cpu_s: float = 0.0


@dataclass(frozen=True)
class Context:
    work: Path
    peers: Path
    env: dict[str, str]
    """The worker's environment (plain HTTP); the peers get the same."""

    @property
    def oras(self) -> Path:
        return self.peers / "oras"

    @property
    def modctl(self) -> Path:
        return self.peers / "modctl"


def run_steps(steps: list[list[str]], ctx: Context, name: str) -> tuple[Sample, str]:
    """Runs the processes one after the other; wall and CPU add up, the peak is the largest."""
    load1 = os.getloadavg()[0]
    wall = cpu = peak = 0.0
    stdout = ""
    for index, argv in enumerate(steps):
        measured = measure(argv, ctx.env, ctx.work / f"{name}-{index}.log")
        wall, cpu = wall + measured.wall_s, cpu + measured.cpu_s
        peak, stdout = max(peak, measured.peak_rss_mib), measured.stdout
    return Sample(wall, cpu, peak, load1), stdout


def push_once(tool: str, model: tools.BenchModel, ctx: Context, run: int) -> Sample:
    name = f"push-{tool}-{model.key}-{run}"
    storage = ctx.work / f"{name}-modctl"
    try:
        with fresh_registry(ctx.work, name) as registry:
            if tool == "ours":
                steps = [tools.ours_push(model, registry.host)]
            elif tool == "oras":
                steps = [tools.oras_push(ctx.oras, model, registry.host)]
            else:
                steps = tools.modctl_steps(ctx.modctl, model, registry.host, storage)
            os.sync()  # one run's writeback must not land in the next
            before = registry.cpu()
            sample, _ = run_steps(steps, ctx, name)
            sample = Sample(**{**asdict(sample), "registry_cpu_s": registry.cpu() - before})
            stored = tree_bytes(registry.registry.storage)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    if stored < model.total_bytes:
        raise tools.ToolError(f"{name}: the registry holds {stored} bytes, the model has more")
    return sample


def pull_model(model: tools.BenchModel, ctx: Context, repeat: int) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {tool: [] for tool in PULL_TOOLS}
    expected = {f.path: f.size for f in model.files}
    with fresh_registry(ctx.work, f"pull-{model.key}") as registry:
        pushed = subprocess.run(
            tools.ours_push(model, registry.host), env=ctx.env, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        reference = f"{registry.host}/bench/{model.key}@{tools.artifact_digest(pushed.stdout)}"
        for run in range(repeat):
            for tool in PULL_TOOLS:
                out = ctx.work / f"pull-{tool}-{model.key}"
                steps = [tools.oras_pull(ctx.oras, reference, out)]
                if tool == "ours":
                    steps = [tools.ours_pull(reference, out)]
                elif tool == "oras+sync":
                    steps.append(["sync", "-f", str(out)])
                os.sync()
                sample, _ = run_steps(steps, ctx, f"pull-{tool}-{model.key}-{run}")
                if (written := tools.tree_files(out)) != expected:
                    raise tools.ToolError(f"{tool} pull of {model.key} wrote {written}")
                shutil.rmtree(out)
                samples[tool].append(sample)
    return samples


def synthetic(work: Path, size_gib: int, seed: int) -> tuple[tools.BenchModel, SyntheticModel]:
    key = f"synthetic-{size_gib}g"
    say(f"generating the {size_gib} GiB synthetic safetensors model")
    generated = generate_model(work / "models" / key, size_gib * GIB, size_gib, seed)
    files = tools.inspect_files(str(generated.directory), tools.worker_env(work / "inspect"))
    label = f"{size_gib} GiB synthetic safetensors ({size_gib} shard{'s' * (size_gib > 1)})"
    return tools.BenchModel(key, label, generated.directory, str(generated.directory), files), (
        generated
    )


def real_models(ctx: Context) -> list[tools.BenchModel]:
    found = locate_real_models()
    minilm = tools.stage_directory("minilm", "MiniLM", found.minilm_dir, ctx.work, ctx.env)
    gguf = tools.stage_file("smollm2-gguf", "SmolLM2 GGUF", found.smollm2_gguf, ctx.work, ctx.env)
    return [minilm, gguf]


def hf_against_raw(ctx: Context, generated: SyntheticModel, repeat: int) -> dict[str, object]:
    """bench_prepare.py's pipeline (Hub emulator → registry) and raw ingest, on our 1 GiB model."""
    pipeline, raw = [], []
    with run_hub() as hub:
        hub.add(PrehashedRepo("bench/peers-1g", generated))
        for run in range(repeat):
            say(f"Hub emulator → registry, and raw ingest ({run + 1}/{repeat})")
            raw.append(run_raw(ctx.work, generated, 1))
            with fresh_registry(ctx.work, f"hf-{run}") as registry:
                variant = run_prepare(
                    "hub → registry", hub, "bench/peers-1g", registry, ctx.work, generated, {}
                )
            pipeline.append(variant)
    best_pipeline = max(pipeline, key=lambda v: v.mb_s)
    best_raw = max(raw, key=lambda v: v.mb_s)
    return {
        "pipeline_wall_s": round(best_pipeline.wall_s, 3),
        "pipeline_mb_s": round(best_pipeline.mb_s, 1),
        "raw_transfer_s": round(best_raw.wall_s, 3),
        "raw_mb_s": round(best_raw.mb_s, 1),
        "ratio": round(best_pipeline.mb_s / best_raw.mb_s, 3),
    }


def summarize(samples: list[Sample]) -> dict[str, object]:
    best = min(samples, key=lambda s: s.wall_s)
    return {"best": asdict(best), "runs": [asdict(s) for s in samples]}


def bench_push(models: list[tools.BenchModel], ctx: Context, repeat: int) -> dict[str, object]:
    results: dict[str, object] = {}
    for model in models:
        runs: dict[str, list[Sample]] = {tool: [] for tool in PUSH_TOOLS}
        for run in range(repeat):
            for tool in PUSH_TOOLS:
                say(f"push {model.key} with {tool} ({run + 1}/{repeat})")
                runs[tool].append(push_once(tool, model, ctx, run))
        results[model.key] = {
            "label": model.label,
            "bytes": model.total_bytes,
            "files": len(model.files),
            "tools": {tool: summarize(s) for tool, s in runs.items()},
        }
    return results


def bench_pull(models: list[tools.BenchModel], ctx: Context, repeat: int) -> dict[str, object]:
    results: dict[str, object] = {}
    for model in models:
        say(f"pull {model.key}: materialize and oras pull")
        runs = pull_model(model, ctx, repeat)
        results[model.key] = {
            "label": model.label,
            "bytes": model.total_bytes,
            "tools": {tool: summarize(s) for tool, s in runs.items()},
        }
    return results


def peers_bin() -> Path:
    built = subprocess.run(
        [str(REPO / "hack" / "build-peers.sh")], capture_output=True, text=True, check=True
    )
    return Path(built.stdout.splitlines()[-1])


def run_all(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {"load_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-peers-", dir=args.work_dir) as temp:
        work = Path(temp)
        ctx = Context(work, peers_bin(), tools.worker_env(work / "workspace"))
        wanted = set(args.models.split(",")) if args.models else None
        models = [m for m in real_models(ctx) if wanted is None or m.key in wanted]
        generated: dict[int, SyntheticModel] = {}
        for seed, size_gib in enumerate((1,) if args.quick else (1, 4), start=1):
            if wanted is None or f"synthetic-{size_gib}g" in wanted:
                model, generated[size_gib] = synthetic(work, size_gib, seed)
                models.append(model)
        results["push"] = bench_push(models, ctx, args.repeat)
        if not args.skip_pull:
            results["pull"] = bench_pull(models, ctx, args.repeat)
        if not args.skip_hf and 1 in generated:
            results["hf"] = hf_against_raw(ctx, generated[1], args.repeat)
    say("start-up and the hashing floor")
    results["startup"] = {
        "help_s": [round(s, 3) for s in tools.help_seconds(5)],
        "importtime": tools.import_offenders("worker.cli", 12),
    }
    results["floor"] = tools.hashing_floor()
    results["load_at_end"] = os.getloadavg()
    results["machine"] = {"cpus": os.cpu_count(), "python": tools.python_version()}
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, min taken (3)")
    parser.add_argument("--quick", action="store_true", help="without the 4 GiB model")
    parser.add_argument("--models", default="", help="only these keys (comma-separated)")
    parser.add_argument("--skip-pull", action="store_true")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--worker", type=Path, default=tools.WORKER,
        help="the worker entry point to measure (default: this checkout's .venv)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools.WORKER = bench_prepare.WORKER = args.worker.resolve()
    needed = (1 if args.quick else 4) * GIB * 3 + GIB
    if shutil.disk_usage(args.work_dir).free < needed:
        raise SystemExit(f"bench_peers: needs {needed / GIB:.0f} GiB free under {args.work_dir}")
    started = time.monotonic()
    results = run_all(args)
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
