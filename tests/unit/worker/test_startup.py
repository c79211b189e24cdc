"""What the worker costs before it does anything: ``--help`` imports no third-party package, and
the heap settings keep chunk buffers out of mmap (fresh pages on every chunk)."""

from __future__ import annotations

import json
import subprocess
import sys

from oci.settings import RegistrySettings
from worker import memory
from worker.oci.publish import DEFAULT_CHUNK_SIZE

HEAVY = ("api", "oci", "pydantic", "requests", "structlog", "httpx2", "zstandard", "worker.oci")


def _imported_after(code: str) -> list[str]:
    probe = (
        f"import json, sys\n{code}\n"
        f"names = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        "or m.startswith('worker.oci'))\n"
        "sys.stderr.write(json.dumps(names))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(answer.stderr))


def test_the_entry_point_imports_nothing_heavy_before_the_arguments_are_parsed() -> None:
    assert _imported_after("import worker.cli") == []


def test_help_exits_before_any_heavy_import() -> None:
    code = "import worker.cli\ntry:\n    worker.cli.main(['--help'])\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == []


def test_prepare_does_not_import_the_pull_side() -> None:
    imported = _imported_after("import worker.cli_run, worker.commands")
    assert "worker.oci.materialize" not in imported
    assert "worker.oci.materialize_writer" not in imported
    assert "worker.oci.publish" in imported  # the probe sees what prepare needs


def test_chunks_stay_below_the_mmap_threshold() -> None:
    largest = max(RegistrySettings().chunk_size, DEFAULT_CHUNK_SIZE)
    assert 2 * largest <= memory.MMAP_THRESHOLD_BYTES  # a chunk plus its framing fits
    assert memory.TRIM_THRESHOLD_BYTES >= memory.MMAP_THRESHOLD_BYTES


def test_the_c_library_takes_the_settings() -> None:
    assert memory.limit_heap_retention() is (sys.platform == "linux")
