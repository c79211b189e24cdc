"""Interop with the ModelPack reference CLI: artifacts built by the real ``modctl`` (tar layers
and raw layers, stored in ``tests/data/oci/modctl-tar/``, see its README) materialize to exactly
the files modctl packed."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from worker.oci.materialize import materialize

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parents[2] / "data" / "oci" / "modctl-tar"
TAR_ARTIFACT = "sha256:2f754a07ee2f1166b1d33d441ecafcc475df3b5cb0c182065111114c7d969ce1"
RAW_ARTIFACT = "sha256:17ae195f8b8f20cdc4b4bfea3645213414cafe574916e7e07b6963bb08a87c9e"
TOKENIZER = "59474f2876031f79e38b0f2e7ce024c21e84fe3b61d3ced1b0bc3bf0425d6f62"
EXPECTED = {
    "LICENSE": "79dbc05f6c03fa8a083912ddecf23e8796cd668ac8e256dac951045f4b0d6653",
    "README.md": "1f4bb388732b931a63a6a4e74efcf93a27bf180b6af0b19247ee38c6ab6c014b",
    "config.json": "a888200b3d20b73e7c28624ad2c42d6a177ce40eaf64765a6f2524cba0ba905a",
    "model.safetensors": "c8f5d0341d54d951a71b136e6e2afcb14d11ed8489a7ae126a8fee0df6ecf193",
    "nested/deep/helper.py": "b80792336156c7b0f7fe02eeef24610d2d52a10d1810397744471d1dc5738180",
    "tokenizer/tokenizer.json": TOKENIZER,
    "tokenizer_2/tokenizer.json": TOKENIZER,  # the same bytes: one blob in the raw artifact
}


def _files(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(".ai-models")
    }


@pytest.mark.parametrize("digest", [TAR_ARTIFACT, RAW_ARTIFACT], ids=["tar", "raw"])
def test_a_modctl_artifact_materializes_to_the_exact_files(tmp_path: Path, digest: str) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(FIXTURE, layout)  # read-only use, but never write into the repository
    out = tmp_path / "model"
    result = materialize(f"{layout}@{digest}", out)
    assert _files(out) == EXPECTED
    assert sorted(f.path for f in result.files) == sorted(EXPECTED)
    assert not any(f.skipped for f in result.files)
    assert all(f.skipped for f in materialize(f"{layout}@{digest}", out).files)
