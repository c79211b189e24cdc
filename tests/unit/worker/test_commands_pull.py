"""The pull commands: none of the prepare side is imported, the registry settings come from the
environment, and ``materialize`` returns the CLI's result dict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.worker.oci.artifacts import Layer, sha256, write_layout
from worker import commands_pull

PREPARE_SIDE = ("worker.commands", "worker.sources", "worker.oci.publish", "worker.podreport",
                "worker.inspect.resolve", "httpx2", "kubernetes", "huggingface_hub")  # fmt: skip


def test_the_pull_commands_import_none_of_the_prepare_side() -> None:
    probe = (
        "import json, sys\nimport worker.cli_run, worker.commands_pull\n"
        f"side = {PREPARE_SIDE!r}\n"
        "below = tuple(name + '.' for name in side)\n"
        "found = [m for m in sys.modules if m in side or m.startswith(below)]\n"
        "sys.stderr.write(json.dumps(sorted(found)))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(answer.stderr) == []


def test_materialize_returns_the_result_the_cli_prints(tmp_path: Path) -> None:
    ref = write_layout(tmp_path / "layout", [Layer("config.json", b"{}")])
    out = tmp_path / "model"
    result = commands_pull.materialize(ref, out)
    assert result == {
        "reference": ref,
        "digest": ref.rpartition("@")[2],
        "directory": str(out),
        "files": [{"path": "config.json", "size": 2, "digest": sha256(b"{}"), "skipped": False}],
    }
