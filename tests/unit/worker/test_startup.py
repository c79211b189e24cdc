"""What the worker costs before it does anything: ``--help`` imports no third-party package, and
the heap settings keep chunk buffers out of mmap (fresh pages on every chunk)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def _modules_after(code: str) -> set[str]:
    probe = f"import json, sys\n{code}\nsys.stderr.write(json.dumps(sorted(sys.modules)))"
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(answer.stderr))


# Not zipfile: importlib.metadata (pydantic's plugin loader) imports it anyway.
HUB_AND_ARCHIVES = (
    "httpx2",
    "worker.sources.hub_client",
    "worker.sources.huggingface",
    "worker.sources.ollama",
    "worker.sources.upload",
    "worker.archive",
    "api.upload",
    "api.catalog_import",
    "zstandard",
    "tarfile",
)


def test_a_local_source_imports_neither_the_hub_client_nor_the_archive_readers(
    tmp_path: Path,
) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    imported = _modules_after(
        f"from worker import commands\ncommands._open_source({str(tmp_path)!r}).plan()"
    )
    assert "worker.sources.local" in imported  # the probe sees the local source
    assert sorted(imported.intersection(HUB_AND_ARCHIVES)) == []


def test_a_hub_source_imports_its_client_on_use() -> None:
    imported = _modules_after(
        "from worker import commands\ncommands._open_source('https://huggingface.co/org/repo')"
    )
    assert {"worker.sources.hub_client", "httpx2"} <= imported
    assert "worker.sources.upload" not in imported


def test_the_sources_package_still_offers_every_provider_by_name() -> None:
    import worker.sources
    from worker.sources.local import LocalSource
    from worker.sources.upload import UploadSettings

    assert worker.sources.LocalSource is LocalSource
    assert worker.sources.UploadSettings is UploadSettings
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = worker.sources.Nothing


def test_a_command_runs_with_its_modules_frozen_and_the_collector_on(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    probe = (
        "import gc, json, sys\n"
        "from worker import cli\n"
        f"code = cli.main(['inspect', {str(tmp_path)!r}, '--json'])\n"
        "sys.stderr.write(json.dumps([code, gc.isenabled(), gc.get_freeze_count()]))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    code, enabled, frozen = json.loads(answer.stderr.splitlines()[-1])
    assert (code, enabled) == (0, True)
    assert frozen > 10_000  # the loaded modules' objects, skipped by every later collection


def test_chunks_stay_below_the_mmap_threshold() -> None:
    largest = max(RegistrySettings().chunk_size, DEFAULT_CHUNK_SIZE)
    assert 2 * largest <= memory.MMAP_THRESHOLD_BYTES  # a chunk plus its framing fits
    assert memory.TRIM_THRESHOLD_BYTES >= memory.MMAP_THRESHOLD_BYTES


def test_the_c_library_takes_the_settings() -> None:
    assert memory.limit_heap_retention() is (sys.platform == "linux")
