"""``ai-models-worker prepare`` of a local directory, judged from the destination's side: what
reached the registry (through a counting proxy), what the layout holds, what the current
directory holds afterwards."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import time
import uuid
from pathlib import Path

import pytest

from tests.ground.models import RealModels
from tests.ground.registry import Registry
from tests.integration.worker_cli_helpers import CountingProxy, run_worker, sha256_file, worker_env

pytestmark = pytest.mark.integration

GIB = 1 << 30
LICENSE = b"Apache License, Version 2.0\n" * 40


def _sparse_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file with one U8 tensor of ``size`` bytes, all zero and sparse."""
    header = json.dumps({"weight": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    encoded = header.encode() + b" " * (-len(header) % 8)
    with path.open("wb") as file:
        file.write(struct.pack("<Q", len(encoded)) + encoded)
        file.truncate(8 + len(encoded) + size)


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big") / "one-gib"
    root.mkdir()
    _sparse_safetensors(root / "model.safetensors", GIB)
    (root / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    return root


def test_an_unchanged_local_directory_sends_no_weight_bytes_the_second_time(
    big_model: Path, registry: Registry, tmp_path: Path
) -> None:
    """Local files have no sha256 in the plan; a large one used to be hashed while it was sent,
    so the second prepare sent the whole GiB again. Now each file is hashed first (one read
    pass), and the registry's HEAD answers decide."""
    env = worker_env(tmp_path, AI_MODELS_REGISTRY_INSECURE="true")
    args = ["prepare", str(big_model), "--to"]
    in_tmp = ["env", "-C", str(tmp_path)]
    proxy = CountingProxy(registry.host)
    try:
        dest = f"{proxy.host}/cli/local-{uuid.uuid4().hex[:8]}:v1"
        started = time.monotonic()
        first = run_worker([*args, dest], env, wrapper=in_tmp, timeout=300)
        mark, between = len(proxy.exchanges), time.monotonic()
        second = run_worker([*args, dest], env, wrapper=in_tmp, timeout=300)
        ended = time.monotonic()
    finally:
        proxy.close()
    # the figures of docs/oci.md (pytest -s shows them)
    first_s, second_s = between - started, ended - between
    print(f"1 GiB local model: first prepare {first_s:.2f} s, second {second_s:.2f} s")
    assert second.result() == first.result()
    assert proxy.committed_upload_bytes(0) >= GIB  # the first run did send it
    rerun = proxy.exchanges[mark:]
    assert [e for e in rerun if "/blobs/uploads/" in e.path] == []  # no upload even started
    assert proxy.committed_upload_bytes(mark) == 0


def test_a_registry_push_writes_nothing_into_the_current_directory(
    real_models: RealModels, registry: Registry, tmp_path: Path
) -> None:
    """Without AI_MODELS_WORKSPACE the upload sessions were kept in ./.ai-models/."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = run_worker(
        ["prepare", str(real_models.minilm_dir),
         "--to", f"{registry.host}/cli/cwd-{uuid.uuid4().hex[:8]}:v1"],
        worker_env(tmp_path, AI_MODELS_REGISTRY_INSECURE="true"),
        wrapper=["env", "-C", str(cwd)],
    )  # fmt: skip
    run.result()
    assert list(cwd.iterdir()) == []


def test_the_workspace_keeps_the_upload_sessions_when_it_is_given(
    real_models: RealModels, registry: Registry, tmp_path: Path
) -> None:
    cwd, workspace = tmp_path / "cwd", tmp_path / "workspace"
    cwd.mkdir()
    workspace.mkdir()
    run = run_worker(
        ["prepare", str(real_models.minilm_dir),
         "--to", f"{registry.host}/cli/ws-{uuid.uuid4().hex[:8]}:v1"],
        worker_env(tmp_path, AI_MODELS_REGISTRY_INSECURE="true",
                   AI_MODELS_WORKSPACE=str(workspace)),
        wrapper=["env", "-C", str(cwd)],
    )  # fmt: skip
    run.result()
    assert list(cwd.iterdir()) == []
    # every upload finished, so no session is left to resume
    assert json.loads((workspace / ".ai-models" / "uploads.json").read_text()) == {}


@pytest.fixture
def model_with_copies(real_models: RealModels, tmp_path: Path) -> Path:
    """MiniLM plus a LICENSE and tokenizer in two places each (as in a diffusers repository's
    tokenizer/ and tokenizer_2/)."""
    root = tmp_path / "minilm"
    shutil.copytree(real_models.minilm_dir, root)
    (root / "LICENSE").write_bytes(LICENSE)
    (root / "README.md").write_bytes(LICENSE)  # the same bytes under another name
    shutil.copyfile(root / "tokenizer.json", root / "1_Pooling" / "tokenizer.json")
    return root


def _layout_blobs_are_content_addressed(layout: Path) -> list[str]:
    blobs = sorted((layout / "blobs" / "sha256").iterdir())
    for blob in blobs:
        assert sha256_file(blob) == blob.name, blob
    return [blob.name for blob in blobs]


def test_files_with_the_same_content_land_once_in_a_layout(
    model_with_copies: Path, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    run = run_worker(
        ["prepare", str(model_with_copies), "--to", str(layout)],
        worker_env(tmp_path),
        wrapper=["env", "-C", str(tmp_path)],
    )
    digest = run.result()["artifact"]["digest"]
    names = _layout_blobs_are_content_addressed(layout)
    manifest = json.loads((layout / "blobs/sha256" / digest.removeprefix("sha256:")).read_text())
    layers = {layer["digest"].removeprefix("sha256:") for layer in manifest["layers"]}
    config = manifest["config"]["digest"].removeprefix("sha256:")
    assert sorted(names) == sorted(layers | {config, digest.removeprefix("sha256:")})
    assert len(manifest["layers"]) == len(layers) + 2  # README = LICENSE, two tokenizers


def test_a_blob_of_the_wrong_size_left_in_a_layout_is_written_again(
    model_with_copies: Path, tmp_path: Path
) -> None:
    """What the racing writers used to leave: a blob file named by a digest its bytes do not
    have (both copies appended). The next prepare skipped it, and the artifact pointed at it."""
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    wrong = layout / "blobs" / "sha256" / hashlib.sha256(LICENSE).hexdigest()
    wrong.write_bytes(LICENSE + LICENSE)
    run = run_worker(
        ["prepare", str(model_with_copies), "--to", str(layout)],
        worker_env(tmp_path),
        wrapper=["env", "-C", str(tmp_path)],
    )
    run.result()
    assert wrong.read_bytes() == LICENSE
    _layout_blobs_are_content_addressed(layout)


def test_a_refused_source_leaves_no_layout_directory_behind(tmp_path: Path) -> None:
    run = run_worker(
        ["prepare", "ftp://example.invalid/model", "--to", "./layout:v1"],
        worker_env(tmp_path),
        wrapper=["env", "-C", str(tmp_path)],
    )
    assert run.failure(2)["reason"] == "InvalidSource"
    assert not (tmp_path / "layout").exists()
