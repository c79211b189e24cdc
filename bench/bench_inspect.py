"""Inspect benchmark: an 8-shard model whose shards declare 2 GiB each, served by the Hub emulator.

The issue's goals: inspecting it fetches <= 2 MiB and takes <= 1 s; the GGUF header of the real
SmolLM2 parses in <= 50 ms. Printed with the figures they rest on and a baseline from the same run.

How:

1. Eight ``model-0000i-of-00008.safetensors`` shards, each a valid safetensors header (32 BF16
   tensors of [8192, 4096], Llama names) whose data region is exactly 2 GiB, written as SPARSE
   files: the header is written, then the file is truncated up to its full size, so the data
   region is a hole and 16 GiB take a few KiB of disk. Plus ``model.safetensors.index.json``
   (``total_size``, ``weight_map``) and a ``config.json`` (``LlamaForCausalLM``).
2. The Hub emulator (``tests/ground/hub.py``) serves them in threads of this process. It lists
   each LFS file's sha256; ``HubRepo`` would read 16 GiB of holes to compute them, so
   ``SparseShardRepo`` hashes the known content (header, then zeros from memory) on all cores
   instead: the same true digests, computed before anything is timed.
3. Timed, each run with an empty request log:
   a. ``ai-models-worker inspect https://huggingface.co/<org>/<repo> --json`` as a process with
      ``HF_ENDPOINT`` = the emulator: wall time including interpreter start, and peak RSS
      (``ru_maxrss`` from ``wait4``, taken by a bare go-between interpreter, ``GO_BETWEEN``,
      because a child spawned straight from this process would inherit this process's
      high-water mark across ``exec``);
   b. ``inspect_source`` in this process (imports done, emulator threads sharing the GIL);
   c. baseline: ``huggingface_hub``'s ``HfApi.get_safetensors_metadata`` (which also reads every
      shard's header by range requests, without validating it), in a process like (a).
   Bytes and requests come from the emulator's request log: API calls, ``/resolve`` of small
   git files, ``/resolve`` redirects of LFS files (302), and ranged GETs of the weights (CDN).
4. The SmolLM2 GGUF header: ``bench_gguf_header.py``'s measurement of our parser (a fresh
   process per parse, time taken around the parse alone).

    .venv/bin/python bench/bench_inspect.py [--repeat 5] [--keep DIR]

No network except 127.0.0.1; the temp directory is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from bench_gguf_header import _measure as measure_gguf_header  # noqa: E402

from tests.ground.hub import HubEmulator, RecordedRequest, run_hub  # noqa: E402
from tests.ground.hub_repo import HubRepo, RepoFile, repo_file  # noqa: E402
from tests.ground.models import locate_real_models  # noqa: E402

WORKER = REPO / ".venv" / "bin" / "ai-models-worker"
REPO_ID = "bench/sparse-llama-8x2g"
SOURCE_URL = f"https://huggingface.co/{REPO_ID}"

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
SHARDS = 8
SHARD_DATA_BYTES = 2 * GIB
HIDDEN = 4096
ROWS = 8192  # one tensor: [8192, 4096] BF16 = 64 MiB; 32 of them fill 2 GiB
HASH_PIECE = 16 * MIB
CHILD_TIMEOUT_S = 300.0

GOAL_BYTES = 2 * MIB
GOAL_WALL_S = 1.0
GOAL_GGUF_MS = 50.0


# ---- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparseShard:
    name: str
    path: Path
    header: bytes
    """The 8-byte length and the JSON: everything in the file before the hole."""
    size: int


def _shard_header(first_tensor: int) -> tuple[bytes, list[str]]:
    tensors: dict[str, object] = {"__metadata__": {"format": "pt"}}
    names, tensor_bytes = [], ROWS * HIDDEN * 2
    for index in range(SHARD_DATA_BYTES // tensor_bytes):
        layer, slot = divmod(first_tensor + index, 8)
        name = f"model.layers.{layer}.mlp.w{slot}.weight"
        tensors[name] = {
            "dtype": "BF16",
            "shape": [ROWS, HIDDEN],
            "data_offsets": [index * tensor_bytes, (index + 1) * tensor_bytes],
        }
        names.append(name)
    raw = json.dumps(tensors, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data region starts 8-aligned, as the writer does it
    return struct.pack("<Q", len(raw)) + raw, names


def write_model(directory: Path) -> tuple[list[SparseShard], dict[str, Path]]:
    """The shards (sparse), the index and config.json; returns the shards and all files."""
    directory.mkdir(parents=True, exist_ok=True)
    shards: list[SparseShard] = []
    files: dict[str, Path] = {}
    weight_map: dict[str, str] = {}
    for number in range(1, SHARDS + 1):
        name = f"model-{number:05d}-of-{SHARDS:05d}.safetensors"
        header, names = _shard_header((number - 1) * 32)
        path = directory / name
        path.write_bytes(header)
        os.truncate(path, len(header) + SHARD_DATA_BYTES)  # the data region is a hole
        shards.append(SparseShard(name, path, header, len(header) + SHARD_DATA_BYTES))
        weight_map.update(dict.fromkeys(names, name))
        files[name] = path
    layers = SHARDS * 32 // 8
    small = {
        "model.safetensors.index.json": {
            "metadata": {"total_size": SHARDS * SHARD_DATA_BYTES},
            "weight_map": weight_map,
        },
        "config.json": {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": HIDDEN,
            "num_hidden_layers": layers,
            "num_attention_heads": 32,
            "max_position_embeddings": 8192,
            "vocab_size": 32000,
            "torch_dtype": "bfloat16",
        },
    }
    for name, document in small.items():
        (directory / name).write_text(json.dumps(document, indent=2) + "\n")
        files[name] = directory / name
    return shards, files


def sparse_sha256(shard: SparseShard) -> str:
    """The file's sha256 from what it holds (header, then zeros), without reading the hole."""
    digest = hashlib.sha256(shard.header)
    zeros = bytes(HASH_PIECE)
    left = shard.size - len(shard.header)
    while left > 0:  # hashlib releases the GIL on large buffers: one thread per core
        digest.update(zeros if left >= HASH_PIECE else zeros[:left])
        left -= HASH_PIECE
    return digest.hexdigest()


class SparseShardRepo(HubRepo):
    """``HubRepo`` with the LFS sha256 of the sparse shards given instead of read from disk."""

    def __init__(self, repo_id: str, files: dict[str, Path], known: dict[str, str]) -> None:
        self._known = known
        super().__init__(repo_id, files)

    def __post_init__(self) -> None:
        entries: dict[str, RepoFile] = {}
        for path, source in sorted(self.files.items()):
            sha256 = self._known.get(path)
            if sha256 is None:
                entries[path] = repo_file(path, source)  # small files: hashing is free
                continue
            draft = RepoFile(path, source, source.stat().st_size, sha256, "", lfs=True)
            pointer = draft.pointer  # git stores the LFS pointer: the tree's oid is its oid
            oid = hashlib.sha1(f"blob {len(pointer)}\0".encode() + pointer)  # noqa: S324
            entries[path] = RepoFile(path, source, draft.size, sha256, oid.hexdigest(), True)
        self.entries = entries
        listing = "".join(f"{e.path}\0{e.sha256}\n" for e in entries.values())
        commit = hashlib.sha1((self.repo_id + "\n" + listing).encode())  # noqa: S324
        self.commit = commit.hexdigest()


# ---- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    requests: int
    total_bytes: int
    kinds: dict[str, tuple[int, int]]
    """kind → (requests, body bytes)."""


def traffic(records: list[RecordedRequest]) -> Traffic:
    kinds: dict[str, tuple[int, int]] = {}
    for record in records:
        path, status, sent = record.path, record.status, record.body_bytes
        if record.server == "cdn":
            kind = "weight ranges (CDN 206)" if status == 206 else f"weights, whole (CDN {status})"
        elif path.startswith("/api/"):
            kind = "API"
        elif status == 302:
            kind = "LFS redirects (302)"
        else:
            kind = "small files (/resolve)"
        count, size = kinds.get(kind, (0, 0))
        kinds[kind] = (count + 1, size + sent)
    total = sum(size for _, size in kinds.values())
    return Traffic(sum(count for count, _ in kinds.values()), total, kinds)


@dataclass(frozen=True)
class Run:
    wall_s: float
    peak_rss_mib: float | None
    traffic: Traffic
    output: str


GO_BETWEEN = """
import json, os, subprocess, sys, tempfile, time
with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    started = time.perf_counter()
    child = subprocess.Popen(sys.argv[1:], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    print(json.dumps({
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "returncode": child.returncode,
        "stdout": out.read().decode(errors="replace"),
        "stderr": err.read().decode(errors="replace")[-4000:],
    }))
"""
"""Runs ARGV, waits for it with ``wait4`` and prints its wall time, peak RSS and output. A bare
interpreter of its own: the child's ``ru_maxrss`` includes the address space it was spawned
from, so it must be small (this process, with the emulator, is not)."""


def _child_env(endpoint: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "POD_", "AI_MODELS_"))}
    env.update(
        {
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(home),  # the baseline's download cache, deleted with the temp dir
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def settled_requests(hub: HubEmulator, quiet_s: float = 0.2) -> list[RecordedRequest]:
    """The request log once it stops growing: the emulator records a request after its answer
    is sent, so the last record of a run can land after the client is done."""
    records = hub.requests
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        latest = hub.requests
        if len(latest) == len(records):
            break
        records = latest
    return records


def run_process(hub: HubEmulator, argv: list[str], env: dict[str, str]) -> Run:
    hub.clear_requests()
    # The baseline's download cache (the index): emptied so that every run fetches the same.
    shutil.rmtree(env["HF_HOME"], ignore_errors=True)
    # Our own interpreter and program text, with our own arguments: nothing untrusted.
    result = subprocess.run(
        [sys.executable, "-c", GO_BETWEEN, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT_S,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["returncode"] != 0:
        raise RuntimeError(f"{argv[:2]} exited {report['returncode']}: {report['stderr']}")
    used = traffic(settled_requests(hub))
    return Run(report["wall_s"], report["peak_rss_mib"], used, report["stdout"])


def run_in_process(hub: HubEmulator, call: Callable[[], str]) -> Run:
    hub.clear_requests()
    started = time.perf_counter()
    output = call()
    wall = time.perf_counter() - started
    return Run(wall, None, traffic(settled_requests(hub)), output)


def _in_process_inspect(endpoint: str) -> Callable[[], str]:
    from worker.inspect.resolve import inspect_source
    from worker.sources import open_source
    from worker.sources.settings import SourceSettings

    settings = SourceSettings(hf_endpoint=endpoint)

    def call() -> str:
        inspection = inspect_source(open_source(SOURCE_URL, settings))
        return json.dumps({"resolved": inspection.resolved.to_wire()})

    return call


STARTUP = [str(REPO / ".venv" / "bin" / "python"), "-c", "import worker.commands"]
"""The floor of the CLI's wall time: the interpreter and the modules ``inspect`` imports."""

HF_BASELINE = """
import json, sys
from huggingface_hub import HfApi
meta = HfApi().get_safetensors_metadata(sys.argv[1])
print(json.dumps({"parameters": sum(meta.parameter_count.values()), "shards": len(meta.files_metadata)}))
"""


# ---- reporting -------------------------------------------------------------------------------


def _mib(size: float) -> str:
    return f"{size / MIB:.2f} MiB"


def _summary(label: str, runs: list[Run]) -> tuple[float, Traffic]:
    walls = [run.wall_s for run in runs]
    median = statistics.median(walls)
    rss = [run.peak_rss_mib for run in runs if run.peak_rss_mib is not None]
    rss_text = f"   peak RSS {statistics.median(rss):.1f} MiB" if rss else ""
    print(f"\n{label}, {len(runs)} runs:")
    print(f"  wall  median {median * 1000:.0f} ms (min {min(walls) * 1000:.0f}){rss_text}")
    seen = {(run.traffic.requests, run.traffic.total_bytes) for run in runs}
    used = runs[0].traffic
    same = "the same in every run" if len(seen) == 1 else f"varied between runs: {sorted(seen)}"
    print(f"  requests {used.requests}, bytes fetched {_mib(used.total_bytes)} ({same})")
    for kind, (count, size) in sorted(used.kinds.items()):
        print(f"    {kind:<28} {count:3d} requests  {size / KIB:9.1f} KiB")
    return median, used


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _gguf_header_ms(repeat: int) -> tuple[float, float, dict[str, float]]:
    path = locate_real_models().smollm2_gguf
    with path.open("rb") as handle:  # warm the page cache, as bench_gguf_header does
        while handle.read(MIB):
            pass
    runs = [measure_gguf_header("ours", path) for _ in range(repeat)]
    seconds = [run["seconds"] for run in runs]
    return statistics.median(seconds) * 1000, min(seconds) * 1000, runs[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the model here and keep it")
    arguments = parser.parse_args()
    work = Path(arguments.keep or tempfile.mkdtemp(prefix="bench-inspect-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        shards, files = write_model(work / "model")
        written_s = time.perf_counter() - started
        on_disk = sum(shard.path.stat().st_blocks * 512 for shard in shards)
        declared = sum(shard.size for shard in shards)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            digests = dict(
                zip([s.name for s in shards], pool.map(sparse_sha256, shards), strict=True)
            )
        hashed_s = time.perf_counter() - started
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load}")
        print(
            f"model: {SHARDS} shards x {SHARD_DATA_BYTES / GIB:.0f} GiB declared "
            f"({declared / GIB:.2f} GiB), sparse: {on_disk / KIB:.0f} KiB on disk; "
            f"headers {len(shards[0].header) / KIB:.1f} KiB each"
        )
        print(
            f"setup (untimed): written in {written_s:.2f} s; sha256 of {declared / GIB:.0f} GiB "
            f"for the listing in {hashed_s:.1f} s (from memory, {os.cpu_count()} threads)"
        )
        with run_hub() as hub:
            hub.add(SparseShardRepo(REPO_ID, files, digests))
            env = _child_env(hub.url, work / "hf-home")
            cli = [str(WORKER), "inspect", SOURCE_URL, "--json"]
            baseline = [sys.executable, "-c", HF_BASELINE, REPO_ID]
            run_process(hub, cli, env)  # warm the page cache of the interpreter and modules
            cli_runs = [run_process(hub, cli, env) for _ in range(arguments.repeat)]
            in_process = _in_process_inspect(hub.url)
            in_process()  # the first call sets up the client's connections
            settled_requests(hub)
            own_runs = [run_in_process(hub, in_process) for _ in range(arguments.repeat)]
            base_runs = [run_process(hub, baseline, env) for _ in range(arguments.repeat)]
            startup_runs = [run_process(hub, STARTUP, env) for _ in range(arguments.repeat)]
        resolved = json.loads(cli_runs[0].output)["resolved"]
        expected = SHARDS * SHARD_DATA_BYTES // 2
        if resolved.get("parameterCount") != expected:
            raise RuntimeError(f"inspect found {resolved}, expected {expected} parameters")
        print(
            f"\ninspect resolved: {resolved.get('architecture')}, "
            f"{resolved.get('parameterCount'):,} parameters, "
            f"context {resolved.get('contextWindowTokens')}"
        )
        cli_s, cli_traffic = _summary(f"ai-models-worker inspect {SOURCE_URL} --json", cli_runs)
        own_s, own_traffic = _summary("in-process inspect_source (after imports)", own_runs)
        base_s, base_traffic = _summary(
            "baseline: huggingface_hub HfApi.get_safetensors_metadata, process", base_runs
        )
        startup_s = statistics.median(run.wall_s for run in startup_runs)
        print(
            f"\nfloor: interpreter start + imports (python -c 'import worker.commands'), "
            f"{len(startup_runs)} runs: median {startup_s * 1000:.0f} ms "
            f"(min {min(run.wall_s for run in startup_runs) * 1000:.0f})"
        )
        gguf_ms, gguf_min, gguf_run = _gguf_header_ms(arguments.repeat)
        print(
            f"\nGGUF header, real SmolLM2 Q4_1 (bench_gguf_header.py's measurement, "
            f"{arguments.repeat} fresh processes): median {gguf_ms:.1f} ms (min {gguf_min:.1f}), "
            f"{gguf_run['reads']} reads, {gguf_run['bytes_read'] / 1e6:.2f} MB read"
        )
        rows = [
            ("bytes fetched, CLI", _mib(cli_traffic.total_bytes), "<= 2 MiB",
             cli_traffic.total_bytes <= GOAL_BYTES),
            ("wall, CLI process (incl. interpreter start)", f"{cli_s:.3f} s", "<= 1 s",
             cli_s <= GOAL_WALL_S),
            ("wall, in-process inspect_source", f"{own_s:.3f} s", "<= 1 s", own_s <= GOAL_WALL_S),
            ("GGUF header parse, SmolLM2", f"{gguf_ms:.1f} ms", "<= 50 ms", gguf_ms <= GOAL_GGUF_MS),
        ]  # fmt: skip
        print("\n| figure | value | goal | result |\n|---|---|---|---|")
        for figure, value, goal, ok in rows:
            print(f"| {figure} | {value} | {goal} | {_verdict(ok)} |")
        ratios = [
            ("bytes fetched / declared weights",
             f"{cli_traffic.total_bytes / declared:.2e} (1 : {declared / cli_traffic.total_bytes:,.0f})"),
            ("weight bytes fetched, ours / baseline",
             f"{_weights(cli_traffic) / max(_weights(base_traffic), 1):.2f} "
             f"({_mib(_weights(cli_traffic))} / {_mib(_weights(base_traffic))})"),
            ("requests, ours / baseline", f"{cli_traffic.requests} / {base_traffic.requests}"),
            ("process wall, ours / baseline", f"{cli_s / base_s:.2f}"),
            ("CLI wall spent in interpreter start + imports", f"{startup_s / cli_s:.0%}"),
            ("CLI wall of the in-process inspection", f"{own_s / cli_s:.0%}"),
        ]  # fmt: skip
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"\nload average at the end {load} (other work on the machine slows the walls)")
        print("\nratios:")
        for figure, value in ratios:
            print(f"  {figure:<46} {value}")
        if own_traffic.total_bytes != cli_traffic.total_bytes:
            print(f"  (in-process fetched {_mib(own_traffic.total_bytes)})")
    finally:
        if arguments.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _weights(used: Traffic) -> int:
    return sum(size for kind, (_, size) in used.kinds.items() if kind.startswith("weight"))


if __name__ == "__main__":
    main()
