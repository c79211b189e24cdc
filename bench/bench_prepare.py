"""Prepare benchmark: a sharded safetensors model on the Hub emulator → the local registry.

The issue's goals, each measured in one run on this machine and printed with its ratio:

- the pipeline (``ai-models-worker prepare https://huggingface.co/<org>/<repo> --to
  127.0.0.1:<port>/bench/model:v1``, HF_ENDPOINT = the emulator) against the registry's raw
  ingest limit on the same bytes: goal >= 0.8x its throughput;
- against the two-step baseline a user would script (``huggingface_hub.snapshot_download`` to
  disk, then oras-py's chunked push of the files): goal >= 1.5x faster;
- the worker's peak RSS with a small (1 GiB) and a large (8 GiB) model: goal <= 200 MiB and
  flat (large / small <= 1.10);
- re-prepare of the same model into the same registry: goal 0 weight bytes moved, <= 5 s.

How:

1. A synthetic but valid model (``bench_prepare_model.py``: LlamaForCausalLM ``config.json``,
   BF16 safetensors shards with correct headers, ``model.safetensors.index.json``) is written in
   16 MiB pieces to a temp dir and served by the Hub emulator (``tests/ground/hub.py``): API and
   ``/resolve`` on one port, LFS files redirected to a "CDN" port with ``X-Linked-Etag``. The
   emulator runs in threads of this process; its CPU time is this process's.
2. Every run gets a fresh docker-registry (``tests/ground/registry.py``), so none benefits from
   another's blobs, and its storage is deleted afterwards; ``sync`` runs before each timed run
   so one run's writeback does not land in the next.
   a. raw ingest (``bench_prepare_children.py raw``): per shard one POST and one streaming PUT
      ``?digest=`` (digest known from generation), body sent with sendfile; once with one stream,
      once with all shards at once; the faster is the registry's ingest limit. Its time is the
      transfer alone (no interpreter start).
   b. the pipeline: the worker CLI as a subprocess; wall time of the whole process (interpreter
      start, inspection, transfer, manifest), split by its own log lines.
   c. the baseline (``bench_prepare_children.py baseline``): snapshot_download to a temp dir, then
      ``OrasClient(insecure=True, auth_backend="basic").push(do_chunked=True)`` of every file
      (16 MiB chunks, as the worker), in one process; the download directory is deleted after.
   d. re-prepare: (b) again into the same registry, through a counting HTTP relay
      (``bench_prepare_proxy.py``) that records every request's body size; weight bytes from the
      Hub are the CDN's whole-file/open-ended GETs in the emulator's request log (inspection's
      bounded header reads are shown apart), weight bytes to the registry are the bodies sent
      under ``/blobs/uploads/`` (the registry's storage growth is shown too).
   e. (b) for a small and a large model, generated when needed and deleted after.
3. Peak RSS of a child is ``ru_maxrss`` from ``wait4()`` on that child (its VmHWM when it
   ended), taken by a small go-between process (``bench_prepare_children.py measure``): Linux
   carries the high-water mark of the address space a process is spawned from across ``exec``,
   so a child spawned straight from this process (tens of MiB with the emulator) would report
   at least this process's peak. Its wall time and CPU seconds come from the go-between too;
   the registry's CPU seconds from ``/proc/<pid>/stat``, the Hub emulator's from ``os.times()``.

    .venv/bin/python bench/bench_prepare.py [--size-mib 4096] [--shards 4]
        [--rss-small-mib 1024] [--rss-large-mib 8192] [--quick] [--json [FILE]]
        [--skip-baseline] [--skip-rss] [--concurrency N] [--worker-env KEY=VALUE]
        [--work-dir DIR]

``--quick``: 1 GiB model, RSS at 256 MiB and 2 GiB. ``--json``: the figures as JSON on stdout
instead of the table; ``--json FILE``: the table on stdout and the JSON in FILE. Free disk is
checked first (the largest phase needs the model, a copy in the registry and, for the baseline,
the downloaded copy); everything is deleted at the end. No network except 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from bench_prepare_model import PrehashedRepo, SyntheticModel, generate_model  # noqa: E402
from bench_prepare_proxy import ProxiedRequest, counting_proxy  # noqa: E402
from bench_prepare_report import Goal, render_table  # noqa: E402

from tests.ground.hub import HubEmulator, RecordedRequest, run_hub  # noqa: E402
from tests.ground.registry import Registry, run_registry  # noqa: E402

MIB = 1 << 20
CHILDREN = BENCH / "bench_prepare_children.py"
WORKER = REPO / ".venv" / "bin" / "ai-models-worker"
CHUNK = 16 * MIB  # the worker's default chunk; the baseline's oras push uses the same
SLACK = 1 << 30  # logs, registry metadata, the file system's own margin
CHILD_TIMEOUT = 3600.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

GOAL_VS_RAW = 0.8
GOAL_VS_BASELINE = 1.5
GOAL_RSS_MIB = 200.0
GOAL_RSS_FLAT = 1.10
GOAL_REPREPARE_S = 5.0


class BenchError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---- measuring child processes -----------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    wall_s: float
    peak_rss_mib: float
    cpu_s: float
    stdout: str
    started_at: float
    """``time.time()`` when the child was started (to place its log lines)."""


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def measure(argv: list[str], env: dict[str, str], log: Path) -> Measured:
    """Runs one child to its end, through the ``measure`` go-between of bench_prepare_children.py
    (see there why): the child's wall time, peak RSS and CPU time from its ``wait4``."""
    result_file = log.with_suffix(".rusage.json")
    wrapped = [sys.executable, str(CHILDREN), "measure", str(result_file), *argv]
    with log.open("wb") as stderr, tempfile.TemporaryFile() as stdout:
        child = subprocess.Popen(
            wrapped, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        watchdog = threading.Timer(CHILD_TIMEOUT, _kill_group, (child.pid,))
        watchdog.start()
        try:
            returncode = child.wait()
        except BaseException:
            _kill_group(child.pid)
            child.wait()
            raise
        finally:
            watchdog.cancel()
        stdout.seek(0)
        output = stdout.read().decode(errors="replace")
    if returncode != 0 or not result_file.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BenchError(
            f"{Path(argv[0]).name} {' '.join(argv[1:3])} exited with {returncode}:\n"
            f"{tail}\n{output[-2000:]}"
        )
    usage = json.loads(result_file.read_text())
    return Measured(
        wall_s=float(usage["wall_s"]),
        peak_rss_mib=float(usage["peak_rss_mib"]),
        cpu_s=float(usage["cpu_s"]),
        stdout=output,
        started_at=float(usage["started_at"]),
    )


def last_json(output: str) -> dict[str, object]:
    return dict(json.loads(output.strip().splitlines()[-1]))


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _proc_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _child_pid(fragment: str) -> int | None:
    """The pid of our own child process whose command line contains ``fragment``."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and fragment in (entry / "cmdline").read_bytes().decode(errors="replace"):
                return int(entry.name)
    return None


@dataclass(frozen=True)
class RunningRegistry:
    registry: Registry
    pid: int | None

    @property
    def host(self) -> str:
        return self.registry.host

    def cpu(self) -> float:
        return _proc_cpu(self.pid)


@contextlib.contextmanager
def fresh_registry(work: Path, name: str) -> Iterator[RunningRegistry]:
    """A new docker-registry with empty storage; the storage is deleted afterwards."""
    directory = work / name
    try:
        with run_registry(directory, name=name) as registry:
            yield RunningRegistry(registry, _child_pid(str(directory / f"{name}.yml")))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# ---- the variants ------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    size_bytes: int
    wall_s: float
    peak_rss_mib: float | None = None
    cpu_client_s: float | None = None
    cpu_registry_s: float | None = None
    cpu_hub_s: float | None = None
    detail: dict[str, object] = field(default_factory=dict)
    moves_model: bool = True
    """False for re-prepare, which moves no weights: a rate would mean nothing."""

    @property
    def mb_s(self) -> float:
        return self.size_bytes / self.wall_s / 1e6


def worker_env(hub: HubEmulator, work: Path, label: str, extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without anything that would change the worker's behaviour."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POD_", "AI_MODELS_", "HF_", "SOURCES_", "OLLAMA_", "DOCKER_"))
    }
    workspace = work / f"workspace-{label}"
    workspace.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(work / "hf-home"),
            "AI_MODELS_REGISTRY_INSECURE": "true",
            "AI_MODELS_WORKSPACE": str(workspace),
            "AI_MODELS_TERMINATION_LOG": str(workspace / "termination-log"),
        }
    )
    env.update(extra)
    return env


def _log_times(log: Path) -> dict[str, float]:
    """Epoch seconds of the worker's ``inspected`` and ``published`` log lines."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            record = json.loads(line)
            if record["event"] in ("inspected", "published"):
                stamp = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
                found[str(record["event"])] = stamp.timestamp()
    return found


def _cdn_bytes(requests: list[RecordedRequest]) -> tuple[int, int]:
    """(bytes of whole-file or open-ended GETs = transfers, bytes of bounded ranged reads)."""
    transfer = inspection = 0
    for r in requests:
        if r.server != "cdn":
            continue
        if r.range is None or r.range.endswith("-"):
            transfer += r.body_bytes
        else:
            inspection += r.body_bytes
    return transfer, inspection


def run_prepare(
    name: str,
    hub: HubEmulator,
    repo_id: str,
    registry: RunningRegistry,
    work: Path,
    model: SyntheticModel,
    extra_env: dict[str, str],
    via: str | None = None,
) -> Variant:
    label = name.replace(" ", "-")
    host = via or registry.host
    argv = [str(WORKER), "prepare", f"https://huggingface.co/{repo_id}", "--to"]
    argv.append(f"{host}/bench/model:v1")
    if not WORKER.exists():
        argv[0:1] = [sys.executable, "-m", "worker"]
    env = worker_env(hub, work, label, extra_env)
    log = work / f"{label}.log"
    hub.clear_requests()
    os.sync()
    registry_cpu, hub_cpu = registry.cpu(), _self_cpu()
    measured = measure(argv, env, log)
    registry_cpu, hub_cpu = registry.cpu() - registry_cpu, _self_cpu() - hub_cpu
    result = last_json(measured.stdout)
    artifact = result.get("artifact")
    if not isinstance(artifact, dict) or not str(artifact.get("digest", "")).startswith("sha256:"):
        raise BenchError(f"{name}: the worker printed no artifact: {result}")
    times = _log_times(log)
    ended = measured.started_at + measured.wall_s
    detail: dict[str, object] = {"artifact_digest": artifact["digest"]}
    if "inspected" in times and "published" in times:
        detail["start_and_inspect_s"] = times["inspected"] - measured.started_at
        detail["transfer_and_manifest_s"] = times["published"] - times["inspected"]
        detail["exit_s"] = ended - times["published"]
    transfer, inspection = _cdn_bytes(hub.requests)
    detail["hub_transfer_bytes"], detail["hub_inspection_bytes"] = transfer, inspection
    stored = tree_bytes(registry.registry.storage)
    if stored < model.weight_bytes:
        raise BenchError(f"{name}: the registry holds {stored} bytes, fewer than the shards")
    return Variant(
        name=name,
        size_bytes=model.total_bytes,
        wall_s=measured.wall_s,
        peak_rss_mib=measured.peak_rss_mib,
        cpu_client_s=measured.cpu_s,
        cpu_registry_s=registry_cpu,
        cpu_hub_s=hub_cpu,
        detail=detail,
    )


def run_raw(work: Path, model: SyntheticModel, streams: int) -> Variant:
    name = f"raw ingest, {streams} stream{'s' if streams > 1 else ''}"
    items = [f"{model.files[n]}=sha256:{hexdigest}" for n, hexdigest in model.sha256.items()]
    with fresh_registry(work, f"raw-{streams}") as registry:
        argv = [sys.executable, str(CHILDREN), "raw", registry.host, "bench/raw", str(streams)]
        os.sync()
        before = registry.cpu()
        measured = measure([*argv, *items], dict(os.environ), work / f"raw-{streams}.log")
        registry_cpu = registry.cpu() - before
        stored = tree_bytes(registry.registry.storage)
    seconds = float(last_json(measured.stdout)["seconds"])  # type: ignore[arg-type]
    if stored < model.weight_bytes:
        raise BenchError(f"{name}: the registry holds {stored} bytes, fewer than the shards")
    return Variant(
        name=name,
        size_bytes=model.weight_bytes,
        wall_s=seconds,
        peak_rss_mib=measured.peak_rss_mib,
        cpu_client_s=measured.cpu_s,
        cpu_registry_s=registry_cpu,
        detail={"process_wall_s": measured.wall_s},
    )


def run_baseline(hub: HubEmulator, repo_id: str, work: Path, model: SyntheticModel) -> Variant:
    download = work / "baseline-download"
    env = worker_env(hub, work, "baseline", {})
    try:
        with fresh_registry(work, "baseline") as registry:
            argv = [sys.executable, str(CHILDREN), "baseline", hub.url, repo_id, str(download)]
            argv += [registry.host, "bench/baseline:v1", str(CHUNK)]
            hub.clear_requests()
            os.sync()
            registry_cpu, hub_cpu = registry.cpu(), _self_cpu()
            measured = measure(argv, env, work / "baseline.log")
            registry_cpu, hub_cpu = registry.cpu() - registry_cpu, _self_cpu() - hub_cpu
            stored = tree_bytes(registry.registry.storage)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    detail: dict[str, object] = dict(last_json(measured.stdout))
    detail["hub_transfer_bytes"], detail["hub_inspection_bytes"] = _cdn_bytes(hub.requests)
    if stored < model.weight_bytes:
        raise BenchError(f"baseline: the registry holds {stored} bytes, fewer than the shards")
    return Variant(
        name="baseline: snapshot_download + oras",
        size_bytes=model.total_bytes,
        wall_s=measured.wall_s,
        peak_rss_mib=measured.peak_rss_mib,
        cpu_client_s=measured.cpu_s,
        cpu_registry_s=registry_cpu,
        cpu_hub_s=hub_cpu,
        detail=detail,
    )


def run_reprepare(
    hub: HubEmulator,
    repo_id: str,
    registry: RunningRegistry,
    work: Path,
    model: SyntheticModel,
    extra_env: dict[str, str],
) -> Variant:
    before = tree_bytes(registry.registry.storage)
    with counting_proxy(registry.host) as proxy:
        variant = run_prepare(
            "re-prepare", hub, repo_id, registry, work, model, extra_env, via=proxy.host
        )
        requests: list[ProxiedRequest] = proxy.requests
        sent = proxy.bytes_to_upstream
    variant.moves_model = False
    uploads = [r for r in requests if "/blobs/uploads/" in r.path]
    methods: dict[str, int] = {}
    for r in requests:
        methods[r.method] = methods.get(r.method, 0) + 1
    variant.detail.update(
        {
            "registry_requests": methods,
            "registry_blob_upload_bytes": sum(r.body_bytes for r in uploads),
            "registry_blob_upload_sessions": sum(1 for r in uploads if r.method == "POST"),
            "registry_manifest_bytes": sum(
                r.body_bytes for r in requests if "/manifests/" in r.path
            ),
            "registry_bytes_sent": sent,
            "registry_storage_growth_bytes": tree_bytes(registry.registry.storage) - before,
        }
    )
    return variant


# ---- orchestration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    size: int
    shards: int
    rss_small: int
    rss_large: int
    baseline: bool
    rss: bool
    worker_env: dict[str, str]
    """Added to the worker's environment (--concurrency, --worker-env)."""
    work_dir: Path


def disk_needed(s: Settings) -> int:
    phases = [2 * s.size, (3 if s.baseline else 2) * s.size]
    if s.rss:
        phases += [2 * s.rss_small, 2 * s.rss_large]
    return max(phases) + SLACK


def check_disk(s: Settings) -> None:
    free = shutil.disk_usage(s.work_dir).free
    needed = disk_needed(s)
    if needed > free:
        raise SystemExit(
            f"bench_prepare: needs {needed / (1 << 30):.1f} GiB free under {s.work_dir} (the "
            "largest phase holds the model, its copy in the registry and, for the baseline, the "
            f"downloaded copy), has {free / (1 << 30):.1f} GiB; use --quick, smaller --size-mib / "
            "--rss-large-mib, or --work-dir on a larger disk"
        )


def label(size: int) -> str:
    mib = size // MIB
    return f"{mib // 1024}g" if mib % 1024 == 0 else f"{mib}m"


def serve_model(
    hub: HubEmulator, work: Path, size: int, shards: int, seed: int
) -> tuple[str, SyntheticModel]:
    say(f"generating a {size // MIB} MiB model in {shards} shards")
    model = generate_model(work / f"model-{label(size)}", size, shards, seed)
    repo_id = f"bench/model-{label(size)}"
    hub.add(PrehashedRepo(repo_id, model))
    return repo_id, model


def run_all(s: Settings) -> dict[str, object]:
    variants: dict[str, Variant] = {}
    rss: dict[str, Variant] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-prepare-", dir=s.work_dir) as temp,
        run_hub() as hub,
    ):
        work = Path(temp)
        repo_id, model = serve_model(hub, work, s.size, s.shards, seed=1)
        for streams in sorted({1, s.shards}):
            say(f"raw ingest, {streams} stream(s)")
            variants[f"raw-{streams}"] = run_raw(work, model, streams)
        with fresh_registry(work, "pipeline") as registry:
            say("ai-models-worker prepare")
            variants["pipeline"] = run_prepare(
                "ai-models-worker prepare", hub, repo_id, registry, work, model, s.worker_env
            )
            say("re-prepare into the same registry")
            variants["reprepare"] = run_reprepare(hub, repo_id, registry, work, model, s.worker_env)
        if s.baseline:
            say("baseline: snapshot_download, then oras chunked push")
            variants["baseline"] = run_baseline(hub, repo_id, work, model)
        shutil.rmtree(model.directory)
        if s.rss:
            for seed, size in enumerate((s.rss_small, s.rss_large), start=2):
                rss_repo, rss_model = serve_model(hub, work, size, s.shards, seed)
                with fresh_registry(work, f"rss-{label(size)}") as registry:
                    say(f"ai-models-worker prepare, {size // MIB} MiB model")
                    rss[label(size)] = run_prepare(
                        f"worker prepare, {size // MIB} MiB model", hub, rss_repo, registry,
                        work, rss_model, s.worker_env,
                    )  # fmt: skip
                shutil.rmtree(rss_model.directory)
    return summarize(s, model, variants, rss)


def summarize(
    s: Settings, model: SyntheticModel, variants: dict[str, Variant], rss: dict[str, Variant]
) -> dict[str, object]:
    pipeline, again = variants["pipeline"], variants["reprepare"]
    raws = [v for k, v in variants.items() if k.startswith("raw-")]
    limit = max(raws, key=lambda v: v.mb_s)
    goals = [
        Goal(
            f"pipeline MB/s / raw ingest limit ({limit.name})",
            pipeline.mb_s / limit.mb_s, f"{pipeline.mb_s / limit.mb_s:.2f}x",
            f">= {GOAL_VS_RAW}x", pipeline.mb_s / limit.mb_s >= GOAL_VS_RAW,
        ),
    ]  # fmt: skip
    if "baseline" in variants:
        ratio = variants["baseline"].wall_s / pipeline.wall_s
        goals.append(
            Goal("baseline wall / pipeline wall", ratio, f"{ratio:.2f}x",
                 f">= {GOAL_VS_BASELINE}x", ratio >= GOAL_VS_BASELINE)
        )  # fmt: skip
    if rss:
        small, large = rss[label(s.rss_small)], rss[label(s.rss_large)]
        peaks = [small.peak_rss_mib or 0.0, large.peak_rss_mib or 0.0]
        names = f"{s.rss_small // MIB} / {s.rss_large // MIB} MiB model"
        goals.append(
            Goal(f"worker peak RSS, {names}", max(peaks), f"{peaks[0]:.0f} / {peaks[1]:.0f} MiB",
                 f"<= {GOAL_RSS_MIB:.0f} MiB", max(peaks) <= GOAL_RSS_MIB)
        )  # fmt: skip
        growth = peaks[1] / peaks[0]
        goals.append(
            Goal(f"worker peak RSS growth, {names}", growth, f"{growth:.2f}x",
                 f"<= {GOAL_RSS_FLAT:.2f}x (flat)", growth <= GOAL_RSS_FLAT)
        )  # fmt: skip
    moved_in = int(again.detail["hub_transfer_bytes"])  # type: ignore[call-overload]
    moved_out = int(again.detail["registry_blob_upload_bytes"])  # type: ignore[call-overload]
    goals += [
        Goal("re-prepare: weight bytes from Hub / to registry", moved_in + moved_out,
             f"{moved_in} / {moved_out}", "0 / 0", moved_in == 0 and moved_out == 0),
        Goal("re-prepare: wall", again.wall_s, f"{again.wall_s:.2f} s",
             f"<= {GOAL_REPREPARE_S:.0f} s", again.wall_s <= GOAL_REPREPARE_S),
    ]  # fmt: skip
    all_variants = {**variants, **{f"rss-{k}": v for k, v in rss.items()}}
    return {
        "machine": {"cpus": os.cpu_count(), "registry": _registry_version()},
        "worker_env": s.worker_env,
        "model": {
            "total_bytes": model.total_bytes,
            "weight_bytes": model.weight_bytes,
            "shards": s.shards,
            "files": sorted(model.files),
        },
        "raw_ingest_limit": limit.name,
        "variants": {k: _variant_json(v) for k, v in all_variants.items()},
        "goals": [g.to_json() for g in goals],
    }


def _variant_json(v: Variant) -> dict[str, object]:
    return {
        "name": v.name,
        "bytes": v.size_bytes,
        "wall_s": round(v.wall_s, 3),
        "mb_s": round(v.mb_s, 1) if v.moves_model else None,
        "peak_rss_mib": None if v.peak_rss_mib is None else round(v.peak_rss_mib, 1),
        "cpu_s": {
            "client": _round(v.cpu_client_s),
            "registry": _round(v.cpu_registry_s),
            "hub": _round(v.cpu_hub_s),
        },
        "detail": {k: _round(x) if isinstance(x, float) else x for k, x in v.detail.items()},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _registry_version() -> str:
    try:
        out = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip().split(" ")[-1] or "unknown"


def parse_args(argv: list[str] | None = None) -> tuple[Settings, str | None]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=4096, help="main model size (4096)")
    parser.add_argument("--shards", type=int, default=4, help="shards per model (4)")
    parser.add_argument("--rss-small-mib", type=int, default=1024, help="small RSS model (1024)")
    parser.add_argument("--rss-large-mib", type=int, default=8192, help="large RSS model (8192)")
    parser.add_argument(
        "--quick", action="store_true", help="1024 MiB model, RSS at 256 and 2048 MiB"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument(
        "--concurrency", type=int, default=None,
        help="AI_MODELS_TRANSFER_CONCURRENCY for the worker (default: the worker's own)",
    )  # fmt: skip
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for the worker (repeatable), for experiments",
    )  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="FILE",
        help="JSON on stdout instead of the table, or the table and JSON in FILE",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mib, args.rss_small_mib, args.rss_large_mib = 1024, 256, 2048
    extra = dict(item.split("=", 1) for item in args.worker_env)
    if args.concurrency is not None:
        extra["AI_MODELS_TRANSFER_CONCURRENCY"] = str(args.concurrency)
    settings = Settings(
        size=args.size_mib * MIB,
        shards=args.shards,
        rss_small=args.rss_small_mib * MIB,
        rss_large=args.rss_large_mib * MIB,
        baseline=not args.skip_baseline,
        rss=not args.skip_rss,
        worker_env=extra,
        work_dir=args.work_dir,
    )
    return settings, args.json


def main(argv: list[str] | None = None) -> int:
    settings, json_out = parse_args(argv)
    check_disk(settings)
    started = time.monotonic()
    results = run_all(settings)
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    document = json.dumps(results, indent=1)
    if json_out == "-":
        print(document)
    else:
        print(render_table(results))
        if json_out:
            Path(json_out).write_text(document + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
