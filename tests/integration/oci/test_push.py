"""Publishing the real MiniLM repository into the real registry, checked with plain HTTP GETs
(urllib, not our client): media types, diffIds, file paths, digests computed independently;
a second push sends no layer bytes; an interrupted upload resumes at the committed offset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from api.model import ResolvedMetadata
from oci.registry import RegistrySettings
from tests.ground.models import RealModels
from tests.ground.registry import Registry
from tests.integration.oci.conftest import DirectorySource, FaultProxy, sha256_file
from tests.integration.worker_cli_helpers import CountingProxy
from worker.errors import SourceUnavailable
from worker.oci.modelpack import ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from worker.oci.publish import LOCAL_READ_SIZE, PublishedArtifact, publish
from worker.oci.target import parse_destination
from worker.plan import SourcePlan

pytestmark = pytest.mark.integration

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "modelpack-config-schema.json").read_text()
)
RESOLVED = ResolvedMetadata(
    architecture="BertModel",
    family="bert",
    format="Safetensors",
    parameter_count=22_713_216,
    supported_endpoint_types=["Embeddings"],
)
MIB = 1 << 20


class NullProgress:
    def stage(self, name: str) -> None:
        pass

    def file_started(self, path: str, size: int) -> None:
        pass

    def advance(self, path: str, nbytes: int) -> None:
        pass

    def file_done(self, path: str, skipped: bool) -> None:
        pass


def _get(url: str, accept: str | None = None) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read(), dict(response.headers)


def _push(
    host: str, repository: str, plan: SourcePlan, source: DirectorySource, **kw: Any
) -> PublishedArtifact:
    target = parse_destination(f"http://{host}/{repository}:uid-1", **kw)
    return publish(plan, source, RESOLVED, target, progress=NullProgress(), chunk_size=4 * MIB)


def test_push_minilm_and_read_it_back_with_plain_http(
    registry: Registry, real_models: RealModels, minilm_plan: SourcePlan, repository: str
) -> None:
    root = real_models.minilm_dir
    artifact = _push(registry.host, repository, minilm_plan, DirectorySource(root))
    base = f"{registry.url}/v2/{repository}"

    manifest_bytes, headers = _get(f"{base}/manifests/uid-1", MANIFEST_MEDIA_TYPE)
    assert hashlib.sha256(manifest_bytes).hexdigest() == artifact.digest.removeprefix("sha256:")
    assert headers["Docker-Content-Digest"] == artifact.digest
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == MANIFEST_MEDIA_TYPE
    assert manifest["artifactType"] == ARTIFACT_TYPE == artifact.media_type
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE

    paths = [layer["annotations"]["org.cncf.model.filepath"] for layer in manifest["layers"]]
    assert paths == [f.path for f in minilm_plan.files]
    for layer in manifest["layers"]:
        path = root / layer["annotations"]["org.cncf.model.filepath"]
        assert layer["digest"] == "sha256:" + sha256_file(path)  # computed here, independently
        assert layer["size"] == path.stat().st_size
    weights = [
        layer for layer in manifest["layers"] if layer["mediaType"].endswith("weight.v1.raw")
    ]
    assert [w["annotations"]["org.cncf.model.filepath"] for w in weights] == ["model.safetensors"]
    blob, _ = _get(f"{base}/blobs/{weights[0]['digest']}")
    assert hashlib.sha256(blob).hexdigest() == sha256_file(root / "model.safetensors")

    config_bytes, _ = _get(f"{base}/blobs/{manifest['config']['digest']}")
    config = json.loads(config_bytes)
    jsonschema.validate(config, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert config["modelfs"]["diffIds"] == [layer["digest"] for layer in manifest["layers"]]
    assert config["config"]["paramSize"] == "22.7M"
    assert artifact.size_bytes == len(config_bytes) + sum(f.size for f in minilm_plan.files)
    assert artifact.reference == f"{registry.host}/{repository}@{artifact.digest}"


def test_second_push_sends_no_layer_bytes_and_gives_the_same_digest(
    registry: Registry,
    real_models: RealModels,
    minilm_plan: SourcePlan,
    repository: str,
    fault_proxy: FaultProxy,
) -> None:
    first_source = DirectorySource(real_models.minilm_dir)
    first = _push(fault_proxy.host, repository, minilm_plan, first_source)
    assert fault_proxy.upload_bytes >= minilm_plan.total_bytes
    fault_proxy.upload_bytes = 0

    second_source = DirectorySource(real_models.minilm_dir)
    second = _push(fault_proxy.host, repository, minilm_plan, second_source)
    assert second.digest == first.digest
    assert "model.safetensors" not in second_source.streamed  # not even downloaded
    # Only the config blob and the manifest could move; the config is already there too.
    assert fault_proxy.upload_bytes == 0


def test_interrupted_upload_resumes_from_the_committed_offset(
    registry: Registry,
    real_models: RealModels,
    minilm_plan: SourcePlan,
    repository: str,
    tmp_path: Path,
) -> None:
    state = tmp_path / "uploads.json"  # what a restarted pod finds in its workspace
    settings = RegistrySettings(chunk_size=4 * MIB)
    broken = DirectorySource(
        real_models.minilm_dir, break_file="model.safetensors", break_after_chunks=5
    )
    with pytest.raises(SourceUnavailable, match="connection reset"):
        _push(registry.host, repository, minilm_plan, broken, upload_state=state, settings=settings)
    # A download is read in pieces of LOCAL_READ_SIZE; the broken source ended the PATCH's
    # body, so the registry kept every byte read before the break.
    assert broken.streamed["model.safetensors"] == 5 * LOCAL_READ_SIZE
    assert f"sha256:{_weights_sha(minilm_plan)}" in json.loads(state.read_text())

    resumed = DirectorySource(real_models.minilm_dir)
    artifact = _push(
        registry.host, repository, minilm_plan, resumed, upload_state=state, settings=settings
    )
    size = (real_models.minilm_dir / "model.safetensors").stat().st_size
    assert resumed.offsets["model.safetensors"] == [5 * LOCAL_READ_SIZE]
    assert resumed.streamed["model.safetensors"] == size - 5 * LOCAL_READ_SIZE
    assert json.loads(state.read_text()) == {}
    blob, _ = _get(f"{registry.url}/v2/{repository}/blobs/sha256:{_weights_sha(minilm_plan)}")
    assert blob == (real_models.minilm_dir / "model.safetensors").read_bytes()
    assert artifact.digest.startswith("sha256:")


def test_a_local_file_goes_in_one_patch_and_resumes_where_its_source_broke(
    registry: Registry,
    real_models: RealModels,
    minilm_plan: SourcePlan,
    repository: str,
    tmp_path: Path,
) -> None:
    """A local plan streams each file in one PATCH, read in pieces of ``LOCAL_READ_SIZE``. A
    source that breaks ends the body where it broke: docker-registry keeps those bytes in a
    valid session, and the next run goes on from there (a body cut mid-way by the network
    would cancel the session instead)."""
    state = tmp_path / "uploads.json"
    local = dataclasses.replace(minilm_plan, local=True)
    proxy = CountingProxy(registry.host)
    try:
        broken = DirectorySource(
            real_models.minilm_dir, break_file="model.safetensors", break_after_chunks=5
        )
        with pytest.raises(SourceUnavailable, match="connection reset"):
            _push(proxy.host, repository, local, broken, upload_state=state)
        weight = [e for e in proxy.exchanges if e.method == "PATCH"]
        assert [(e.request_bytes, e.status) for e in weight] == [(5 * LOCAL_READ_SIZE, 202)]
        mark = len(proxy.exchanges)
        resumed = DirectorySource(real_models.minilm_dir)
        _push(proxy.host, repository, local, resumed, upload_state=state)
    finally:
        proxy.close()
    size = (real_models.minilm_dir / "model.safetensors").stat().st_size
    assert resumed.offsets["model.safetensors"] == [5 * LOCAL_READ_SIZE]
    patches = [e for e in proxy.exchanges[mark:] if e.method == "PATCH"]
    assert [(e.request_bytes, e.status) for e in patches] == [(size - 5 * LOCAL_READ_SIZE, 202)]
    blob, _ = _get(f"{registry.url}/v2/{repository}/blobs/sha256:{_weights_sha(minilm_plan)}")
    assert blob == (real_models.minilm_dir / "model.safetensors").read_bytes()


def _weights_sha(plan: SourcePlan) -> str:
    planned = plan.file("model.safetensors")
    assert planned is not None
    assert planned.sha256 is not None
    return planned.sha256


def test_blobs_of_another_repository_are_mounted_not_sent(
    registry: Registry,
    real_models: RealModels,
    minilm_plan: SourcePlan,
    repository: str,
    fault_proxy: FaultProxy,
) -> None:
    _push(registry.host, repository, minilm_plan, DirectorySource(real_models.minilm_dir))
    source = DirectorySource(real_models.minilm_dir)
    other = f"{repository}-copy"
    target = parse_destination(f"http://{fault_proxy.host}/{other}:uid-2", mount_from=[repository])
    artifact = publish(minilm_plan, source, RESOLVED, target, progress=NullProgress())
    assert "model.safetensors" not in source.streamed
    assert fault_proxy.upload_bytes == 0
    assert any("mount=sha256" in line and f"from={repository}" in line.replace("%2F", "/")
               for line in fault_proxy.seen)  # fmt: skip
    manifest, _ = _get(f"{registry.url}/v2/{other}/manifests/uid-2", MANIFEST_MEDIA_TYPE)
    assert hashlib.sha256(manifest).hexdigest() == artifact.digest.removeprefix("sha256:")
