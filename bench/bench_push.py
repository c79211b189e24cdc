"""Push benchmark: the same ~1 GiB file into a local docker-registry with oras-py's default push
and with our registry client; prints wall time, throughput, peak RSS and the ratios.

Each push runs in its own process, started by a small "measurer" process that waits for it and
reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` — the peak RSS of that one push process.
Each push gets a fresh registry (the registry would otherwise find the blob already there), and
its storage is deleted afterwards, so the disk holds at most the file and one registry copy.

    .venv/bin/python bench/bench_push.py [--size-mib 1024] [--chunk-mib 16]

Not a test: figures vary with the machine; the ratios are what docs/oci.md records.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ground.registry import run_registry  # noqa: E402

MIB = 1 << 20
VARIANTS = ("oras-default", "ours-hashing", "ours-known-digest")


# ---- the push processes ------------------------------------------------------------------------


def push_with_oras(host: str, path: Path) -> None:
    import oras.client  # the declared dependency under comparison

    client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
    os.chdir(path.parent)  # oras-py wants files relative to the working directory
    client.push(target=f"{host}/bench/oras:v1", files=[path.name], quiet=True)


def push_with_ours(host: str, path: Path, chunk_mib: int, digest: str | None) -> None:
    from api.model import ResolvedMetadata
    from oci.registry import RegistrySettings
    from worker.oci.publish import publish
    from worker.plan import PlannedFile, SourcePlan

    class FileSource:
        def stream(self, name: str, offset: int = 0, chunk_size: int = MIB) -> object:
            with path.open("rb") as file:
                file.seek(offset)
                while piece := file.read(chunk_size):
                    yield piece

    class Quiet:
        def stage(self, name: str) -> None: ...
        def file_started(self, name: str, size: int) -> None: ...
        def advance(self, name: str, nbytes: int) -> None: ...
        def file_done(self, name: str, skipped: bool) -> None: ...

    from worker.oci.target import parse_destination

    size = path.stat().st_size
    planned = PlannedFile(
        path.name, size, "weight", digest.removeprefix("sha256:") if digest else None
    )
    plan = SourcePlan("file://bench", None, None, "bench", "Safetensors", (planned,))
    settings = RegistrySettings(chunk_size=chunk_mib * MIB)
    target = parse_destination(f"http://{host}/bench/ours:v1", settings=settings)
    publish(plan, FileSource(), ResolvedMetadata(), target, progress=Quiet(),  # type: ignore[arg-type]
            chunk_size=chunk_mib * MIB)  # fmt: skip


# ---- measuring ---------------------------------------------------------------------------------


def measure(argv: list[str]) -> dict[str, float]:
    """Runs one push in a child process; returns its wall time and peak RSS."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--push", *argv], check=True)
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    return {"wall_s": wall, "peak_rss_mib": peak_kib / 1024}


def run_variant(
    variant: str, path: Path, work: Path, chunk_mib: int, digest: str
) -> dict[str, float]:
    with run_registry(work / variant, name=variant) as registry:
        argv = [variant, registry.host, str(path), str(chunk_mib), digest]
        output = subprocess.run(
            [sys.executable, __file__, "--measure", *argv],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    shutil.rmtree(registry.storage, ignore_errors=True)
    return dict(json.loads(output.strip().splitlines()[-1]))


def make_file(path: Path, size: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(size // (16 * MIB)):
            piece = os.urandom(16 * MIB)
            digest.update(piece)
            file.write(piece)
    return "sha256:" + digest.hexdigest()


def report(results: dict[str, dict[str, float]], size: int) -> None:
    print(f"\nfile: {size / MIB:.0f} MiB, each push into a fresh docker-registry on 127.0.0.1\n")
    print(f"{'variant':<20} {'wall s':>8} {'MB/s':>8} {'peak RSS MiB':>13}")
    for name, r in results.items():
        rate = size / r["wall_s"] / 1e6
        print(f"{name:<20} {r['wall_s']:>8.2f} {rate:>8.0f} {r['peak_rss_mib']:>13.0f}")
    base = results["oras-default"]
    for name in ("ours-hashing", "ours-known-digest"):
        r = results[name]
        print(
            f"{name} vs oras-default: {base['wall_s'] / r['wall_s']:.2f}x faster, "
            f"{base['peak_rss_mib'] / r['peak_rss_mib']:.1f}x less peak RSS"
        )


def main() -> None:
    if sys.argv[1:2] == ["--push"]:
        variant, host, path, chunk_mib, digest = sys.argv[2:7]
        if variant == "oras-default":
            push_with_oras(host, Path(path))
        else:
            known = digest if variant == "ours-known-digest" else None
            push_with_ours(host, Path(path), int(chunk_mib), known)
        return
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=16)
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="bench-push-") as temp:
        work = Path(temp)
        path = work / "weights.bin"
        digest = make_file(path, size)
        results = {v: run_variant(v, path, work, args.chunk_mib, digest) for v in VARIANTS}
    print(json.dumps(results, indent=1))
    report(results, size)


if __name__ == "__main__":
    main()
