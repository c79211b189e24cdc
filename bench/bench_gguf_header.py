"""Benchmark: our GGUF header parser against ``gguf.GGUFReader``, wall time and peak RSS.

Each measurement runs in a fresh Python process, so peak RSS (``VmHWM``) belongs to one parse
and nothing is cached in the interpreter; the page cache is warm for both (each file is
read once before measuring). Wall time is taken inside the child around the parse alone
(imports excluded). Two files: the real SmolLM2-135M Q4_1 (49k vocabulary) and a synthetic
file with a 150k-entry vocabulary, merges and token types written by ``gguf.GGUFWriter``.

    .venv/bin/python bench/bench_gguf_header.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = ("ours", "GGUFReader")


def _peak_rss_kib() -> int:
    """Peak RSS of this process image, in KiB.

    ``VmHWM`` belongs to the current address space, which ``exec`` makes new; ``ru_maxrss``
    would also carry the high-water mark the parent had when it forked us.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(implementation: str, path: str) -> None:
    """One measurement: import, note RSS, parse once, note time and RSS, print JSON."""
    reads: int | None = None
    bytes_read: int | None = None
    if implementation == "ours":
        from worker.inspect.gguf import read_gguf_header
        from worker.inspect.reader import FileByteSource

        source = FileByteSource(path)
        before = _peak_rss_kib()
        started = time.perf_counter()
        read_gguf_header(source)
        seconds = time.perf_counter() - started
        reads, bytes_read = source.reads, source.bytes_read
    else:
        import gguf

        before = _peak_rss_kib()
        started = time.perf_counter()
        gguf.GGUFReader(path)
        seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "peak_kib": _peak_rss_kib(),
        "before_kib": before,
        "reads": reads,
        "bytes_read": bytes_read,
    }
    print(json.dumps(result))


def _measure(implementation: str, path: Path) -> dict[str, float]:
    # Our own interpreter running this very script: no untrusted input reaches the command.
    result = subprocess.run(
        [sys.executable, __file__, "--child", implementation, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def _synthetic_vocabulary(directory: Path, size: int = 150_000) -> Path:
    import gguf
    import numpy as np

    path = directory / f"vocab-{size}.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(32768)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"token-{i}" for i in range(size)])
    writer.add_token_types([1] * size)
    writer.add_token_merges([f"tok en-{i}" for i in range(size)])
    writer.add_tensor("token_embd.weight", np.zeros((size, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _report(label: str, path: Path, repeat: int) -> None:
    with path.open("rb") as handle:  # warm the page cache for both alike, in small reads
        while handle.read(1 << 20):
            pass
    print(f"\n{label}: {path.name}, {path.stat().st_size / 1e6:.1f} MB")
    medians: dict[str, tuple[float, float]] = {}
    for implementation in IMPLEMENTATIONS:
        runs = [_measure(implementation, path) for _ in range(repeat)]
        seconds = statistics.median(run["seconds"] for run in runs)
        fastest = min(run["seconds"] for run in runs)
        peak_mib = statistics.median(run["peak_kib"] for run in runs) / 1024
        grown_mib = statistics.median(run["peak_kib"] - run["before_kib"] for run in runs) / 1024
        medians[implementation] = (seconds, grown_mib)
        extra = ""
        if runs[0]["reads"] is not None:
            extra = f", {runs[0]['reads']} reads, {runs[0]['bytes_read'] / 1e6:.2f} MB read"
        print(
            f"  {implementation:<10} {seconds * 1000:7.1f} ms median of {repeat} "
            f"(min {fastest * 1000:7.1f})   "
            f"peak RSS {peak_mib:6.1f} MiB (parse added {grown_mib:6.1f} MiB){extra}"
        )
    (ours_s, ours_mib), (ref_s, ref_mib) = medians["ours"], medians["GGUFReader"]
    print(
        f"  ratio      GGUFReader/ours: time x{ref_s / ours_s:.1f}, "
        f"RSS added {ref_mib:.1f} MiB vs {ours_mib:.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("IMPLEMENTATION", "PATH"))
    arguments = parser.parse_args()
    if arguments.child:
        _child(*arguments.child)
        return
    sys.path.insert(0, str(REPO))
    from tests.ground.models import locate_real_models

    print(f"python {sys.version.split()[0]}, one fresh process per measurement")
    _report("real SmolLM2-135M-Instruct Q4_1", locate_real_models().smollm2_gguf, arguments.repeat)
    with tempfile.TemporaryDirectory() as directory:
        _report(
            "synthetic 150k vocabulary", _synthetic_vocabulary(Path(directory)), arguments.repeat
        )


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.path.insert(0, str(REPO))
    main()
