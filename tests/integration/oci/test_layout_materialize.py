"""OCI layout destinations and materialize: a valid layout with the registry's digest, files
reproduced byte for byte from a registry and from a layout, corruption caught, re-runs resumed,
8,000 small layers in linear time."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
from pathlib import Path

import pytest

from oci.errors import InvalidReference
from tests.ground.models import RealModels
from tests.ground.registry import Registry
from tests.integration.oci.conftest import DirectorySource, plan_directory, sha256_file
from tests.integration.oci.test_push import RESOLVED, NullProgress
from tests.unit.worker.oci.artifacts import Layer, tree, write_layout
from worker.errors import InvalidWeights
from worker.oci.materialize import PARTIAL_DIR, STATE_FILE, Materialized, materialize
from worker.oci.publish import PublishedArtifact, publish
from worker.oci.target import parse_destination
from worker.plan import SourcePlan

pytestmark = pytest.mark.integration


def _publish(dest: str, root: Path, plan: SourcePlan, **kw: object) -> PublishedArtifact:
    target = parse_destination(dest, **kw)  # type: ignore[arg-type]
    return publish(plan, DirectorySource(root), RESOLVED, target, progress=NullProgress())


def _same_tree(left: Path, right: Path, plan: SourcePlan) -> None:
    for planned in plan.files:
        assert filecmp.cmp(left / planned.path, right / planned.path, shallow=False), planned.path


def _blob_storage(registry: Registry, digest: str) -> Path:
    hex_digest = digest.removeprefix("sha256:")
    return (
        registry.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
    )


def test_layout_destination_is_valid_and_matches_the_registry_digest(
    registry: Registry,
    real_models: RealModels,
    minilm_plan: SourcePlan,
    repository: str,
    tmp_path: Path,
) -> None:
    root = real_models.minilm_dir
    layout = tmp_path / "layout"
    in_layout = _publish(str(layout), root, minilm_plan, tag="uid-1")
    in_registry = _publish(f"http://{registry.host}/{repository}:uid-1", root, minilm_plan)
    assert in_layout.digest == in_registry.digest
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"] == [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": in_layout.digest,
            "size": (layout / "blobs/sha256" / in_layout.digest[7:]).stat().st_size,
            "artifactType": "application/vnd.cncf.model.manifest.v1+json",
            "annotations": {"org.opencontainers.image.ref.name": "uid-1"},
        }
    ]
    blobs = list((layout / "blobs" / "sha256").iterdir())
    assert len(blobs) == len(minilm_plan.files) + 2  # layers + config + manifest
    for blob in blobs:
        assert sha256_file(blob) == blob.name  # content-addressed, nothing half-written


def test_materialize_from_the_registry_then_resume(
    registry: Registry,
    real_models: RealModels,
    minilm_plan: SourcePlan,
    repository: str,
    tmp_path: Path,
) -> None:
    root = real_models.minilm_dir
    artifact = _publish(f"http://{registry.host}/{repository}:uid-1", root, minilm_plan)
    out = tmp_path / "model"
    first = materialize(f"http://{artifact.reference}", out)
    _same_tree(root, out, minilm_plan)
    assert not any(f.skipped for f in first.files)
    assert first.digest == artifact.digest
    assert not (out / PARTIAL_DIR).exists()
    assert (out / STATE_FILE).is_file()

    second = materialize(f"http://{artifact.reference}", out)
    assert all(f.skipped for f in second.files)


def test_materialize_resumes_a_partial_file_and_rehashes_unrecorded_ones(
    registry: Registry,
    real_models: RealModels,
    minilm_plan: SourcePlan,
    repository: str,
    tmp_path: Path,
) -> None:
    root = real_models.minilm_dir
    artifact = _publish(f"http://{registry.host}/{repository}:uid-1", root, minilm_plan)
    out = tmp_path / "model"
    weights = (root / "model.safetensors").read_bytes()
    weights_digest = "sha256:" + hashlib.sha256(weights).hexdigest()
    (out / PARTIAL_DIR).mkdir(parents=True)
    (out / PARTIAL_DIR / weights_digest[7:]).write_bytes(weights[: len(weights) // 2])
    (out / "config.json").write_bytes((root / "config.json").read_bytes())  # no state record
    (out / "vocab.txt").write_bytes(b"x" * (root / "vocab.txt").stat().st_size)  # wrong bytes

    result = materialize(f"http://{artifact.reference}", out)
    skipped = {f.path for f in result.files if f.skipped}
    assert skipped == {"config.json"}
    _same_tree(root, out, minilm_plan)


def test_materialize_from_a_layout(
    real_models: RealModels,
    minilm_plan: SourcePlan,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = real_models.minilm_dir
    layout = tmp_path / "layout"
    artifact = _publish(str(layout), root, minilm_plan)
    result: Materialized = materialize(f"{layout}@{artifact.digest}", tmp_path / "model")
    _same_tree(root, tmp_path / "model", minilm_plan)
    assert len(result.files) == len(minilm_plan.files)
    monkeypatch.chdir(tmp_path)
    again = materialize(f"./layout@{artifact.digest}", tmp_path / "model")
    assert all(f.skipped for f in again.files)


def test_a_corrupted_blob_is_detected_and_not_left_behind(
    registry: Registry, repository: str, tmp_path: Path
) -> None:
    model = tmp_path / "src"
    model.mkdir()
    (model / "model.gguf").write_bytes(os.urandom(3 << 20))  # unique: no other test shares it
    (model / "config.json").write_text("{}")
    plan = plan_directory(model, "corrupt")
    artifact = _publish(f"http://{registry.host}/{repository}:uid-1", model, plan)
    planned = plan.file("model.gguf")
    assert planned is not None
    assert planned.sha256 is not None
    stored = _blob_storage(registry, f"sha256:{planned.sha256}")
    data = bytearray(stored.read_bytes())
    data[1 << 20] ^= 0xFF  # same size, one bit pattern changed on the registry's disk
    stored.write_bytes(bytes(data))

    out = tmp_path / "model"
    with pytest.raises(InvalidWeights, match=r"^model\.gguf: blob sha256:\w+ .* corrupt"):
        materialize(f"http://{artifact.reference}", out)
    assert not (out / "model.gguf").exists()
    assert list((out / PARTIAL_DIR).iterdir()) == []


def test_a_tag_only_reference_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidReference, match="pulls by digest only"):
        materialize(f"http://{registry.host}/some/model:latest", Path("/nonexistent"))


def test_eight_thousand_small_layers_materialize_in_linear_time(tmp_path: Path) -> None:
    """The journal is appended to, not rewritten per file (8,000 files took 228 s when it was);
    docs/oci.md has the measured time. Every file is checked, not the clock."""
    layers = [Layer(f"d{i % 40}/f{i}.json", b'{"i": %d}\n' % i) for i in range(8000)]
    ref = write_layout(tmp_path / "layout", layers)
    out = tmp_path / "model"
    result = materialize(ref, out)
    assert tree(out) == {layer.path: layer.data for layer in layers}
    assert [f.path for f in result.files] == [layer.path for layer in layers]
    assert len((out / STATE_FILE).read_bytes().splitlines()) == 8000
    assert all(f.skipped for f in materialize(ref, out).files)
