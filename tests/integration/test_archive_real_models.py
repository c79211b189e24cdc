"""The unpacker on the real MiniLM directory (90 MB): byte-identical files from a tar.gz and a
zip. Here rather than in tests/unit because compressing the real files takes seconds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.ground.models import RealModels
from tests.unit.worker.archive_builders import archive_of, unpack
from worker.archive import ArchiveKind, ArchiveLimits


def _sha256s(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_the_real_minilm_directory_unpacks_byte_identical(
    tmp_path: Path, real_models: RealModels, kind: ArchiveKind
) -> None:
    source = real_models.minilm_dir
    files = {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*")
             if p.is_file()}  # fmt: skip
    archive = archive_of(kind, files, "all-MiniLM-L6-v2/")
    done = unpack(tmp_path, archive, kind, ArchiveLimits())
    assert done.root.name == "all-MiniLM-L6-v2"
    assert _sha256s(done.root) == _sha256s(source)
