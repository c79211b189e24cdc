"""Hostile headers: what an accepted-looking header costs ``ai-models-worker inspect``.

Builds, in a temp directory, the cases of docs/inspection.md ("What a header may cost") and runs
``ai-models-worker inspect --json DIR`` on each under ``/usr/bin/time -v``, printing the exit
code, the wall time and the peak RSS:

- ``st-3x1.3M``: three safetensors shards of 1.3 M empty F16 tensors each (77 MiB headers);
- ``st-1x999999``: one shard at the tensor budget (the most still accepted);
- ``st-3x333333``: three shards together at the budget;
- ``gguf-10M-nested``: one GGUF key holding 10 M empty arrays (a 120 MB header).

    .venv/bin/python bench/bench_hostile_headers.py [--only NAME] [--keep DIR]

About 500 MB of disk while it runs; the directory is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / ".venv" / "bin" / "ai-models-worker"
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
ENTRY = '{"dtype":"F16","shape":[0],"data_offsets":[0,0]}'


def _shard(path: Path, count: int, prefix: str) -> None:
    raw = ("{" + ",".join(f'"{prefix}.{i:07d}":{ENTRY}' for i in range(count)) + "}").encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def _safetensors(shards: int, count: int) -> Callable[[Path], None]:
    def build(directory: Path) -> None:
        (directory / "config.json").write_text(json.dumps(CONFIG))
        if shards == 1:
            _shard(directory / "model.safetensors", count, "t")
            return
        for k in range(1, shards + 1):
            _shard(directory / f"model-{k:05d}-of-{shards:05d}.safetensors", count, f"s{k}")

    return build


def _gguf_nested(count: int) -> Callable[[Path], None]:
    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    def build(directory: Path) -> None:
        with (directory / "model.gguf").open("wb") as out:
            out.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 2))
            out.write(string("general.architecture") + struct.pack("<I", 8) + string("llama"))
            out.write(string("x.nested") + struct.pack("<IIQ", 9, 9, count))
            out.write(struct.pack("<IQ", 0, 0) * count)  # empty u8 arrays
            out.write(b"\0" * 64)

    return build


CASES: dict[str, Callable[[Path], None]] = {
    "st-3x1.3M": _safetensors(3, 1_300_000),
    "st-1x999999": _safetensors(1, 999_999),
    "st-3x333333": _safetensors(3, 333_333),
    "gguf-10M-nested": _gguf_nested(10_000_000),
}


def _measure(directory: Path) -> str:
    done = subprocess.run(
        ["/usr/bin/time", "-v", str(WORKER), "inspect", "--json", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    reason = re.search(r'"reason": "(\w+)"', done.stderr)
    return (
        f"exit {done.returncode} ({reason.group(1) if reason else 'ok'}), "
        f"wall {wall.group(1) if wall else '?'}, "
        f"peak RSS {int(rss.group(1)) // 1024 if rss else '?'} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="hostile-headers-"))
    try:
        for name, build in CASES.items():
            if args.only and name != args.only:
                continue
            directory = root / name
            directory.mkdir(parents=True, exist_ok=True)
            build(directory)
            print(f"{name}: {_measure(directory)}", flush=True)
            if not args.keep:
                shutil.rmtree(directory)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
