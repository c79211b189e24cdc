"""``ai-models-worker prepare upload+oci://…`` against the real registry: an uploaded blob in a
staging repository becomes the same artifact layers as the same files from anywhere else.

The blobs are pushed the way the upload gateway leaves them (a committed blob in
``<prefix>/upload/<session>``, no manifest). An archive of the real MiniLM directory gives the
layer digests of the directory itself (raw layers are the files' sha256, as on the Hugging Face
path); the real SmolLM2 GGUF is mounted from the staging repository, not sent again; bad uploads
fail with exit code 2 and the reason in the one JSON line.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from api.upload import worker_source
from oci.registry import RegistryClient
from tests.ground.models import RealModels
from tests.ground.registry import Registry
from tests.integration.worker_cli_helpers import CountingProxy, run_worker, worker_env

pytestmark = pytest.mark.integration

FILEPATH = "org.cncf.model.filepath"


def _push_blob(host: str, repository: str, data: bytes) -> str:
    client = RegistryClient(host, insecure=True)
    try:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = client.start_upload(repository)
        location = client.upload_chunk(repository, location, data, 0)
        client.finish_upload(repository, location, digest)
        return digest
    finally:
        client.close()


def _staged(host: str, data: bytes, filename: str) -> str:
    """Pushes ``data`` into a new staging repository; the worker's source argument for it."""
    repository = f"ai-models/upload/upload-{uuid.uuid4().hex[:12]}"
    return worker_source(host, repository, _push_blob(host, repository, data), filename)


def _tar_gz(root: Path, top: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        archive.add(root, arcname=top)
    return buffer.getvalue()


def _env(home: Path, **variables: str) -> dict[str, str]:
    workspace = home / "workspace"
    workspace.mkdir(exist_ok=True)
    return worker_env(home, AI_MODELS_REGISTRY_INSECURE="true", AI_MODELS_WORKSPACE=str(workspace),
                      **variables)  # fmt: skip


def _layers(host: str, repository: str) -> dict[str, str]:
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        manifest: dict[str, Any] = json.loads(response.read())
    return {layer["annotations"][FILEPATH]: layer["digest"] for layer in manifest["layers"]}


def _prepare(source: str, host: str, repository: str, env: dict[str, str]) -> dict[str, Any]:
    return run_worker(["prepare", source, "--to", f"{host}/{repository}:v1"], env,
                      timeout=300).result()  # fmt: skip


def test_an_uploaded_minilm_archive_gives_the_layers_of_the_directory(
    registry: Registry, real_models: RealModels, tmp_path: Path
) -> None:
    minilm = real_models.minilm_dir
    source = _staged(registry.host, _tar_gz(minilm, "all-MiniLM-L6-v2"), "minilm.tar.gz")
    env = _env(tmp_path)
    uploaded = _prepare(source, registry.host, "cli/upload-minilm", env)
    local = _prepare(str(minilm), registry.host, "cli/local-minilm", env)

    layers = _layers(registry.host, "cli/upload-minilm")
    assert layers == _layers(registry.host, "cli/local-minilm")
    for path, digest in layers.items():  # raw layers: the file's sha256, as from the Hub
        assert digest == "sha256:" + hashlib.sha256((minilm / path).read_bytes()).hexdigest()
    assert "model.safetensors" in layers
    blob_digest = source.split("@", 1)[1].split("?", 1)[0]
    assert uploaded["source"] == {"resolvedType": "Upload", "resolvedRevision": blob_digest}
    expected = {k: v for k, v in local["resolved"].items() if k != "sourceCapabilities"}
    assert {k: v for k, v in uploaded["resolved"].items() if k != "sourceCapabilities"} == expected
    assert uploaded["resolved"]["architecture"] == "BertModel"


def test_an_uploaded_gguf_is_mounted_not_sent_again(
    registry: Registry, real_models: RealModels, tmp_path: Path
) -> None:
    proxy = CountingProxy(registry.host)
    try:
        gguf = real_models.smollm2_gguf.read_bytes()
        source = _staged(proxy.host, gguf, real_models.smollm2_gguf.name)
        staging = source.split("://", 1)[1].split("/", 1)[1].split("@", 1)[0]
        mark = len(proxy.exchanges)
        result = _prepare(source, proxy.host, "cli/upload-smollm2", _env(
            tmp_path, AI_MODELS_MOUNT_FROM=staging))  # fmt: skip
        exchanges = proxy.exchanges[mark:]
    finally:
        proxy.close()
    digest = "sha256:" + hashlib.sha256(gguf).hexdigest()
    assert result["source"] == {"resolvedType": "Upload", "resolvedRevision": digest}
    assert (result["resolved"]["architecture"], result["resolved"]["format"]) == ("llama", "GGUF")
    mounts = [
        e for e in exchanges if e.method == "POST" and "mount=sha256%3A" + digest[7:] in e.path
    ]
    assert [m.status for m in mounts] == [201]
    uploads = [e for e in exchanges if e.is_upload]
    assert sum(e.request_bytes for e in uploads) < 4096  # the config blob only: 0 weight bytes
    assert _layers(registry.host, "cli/upload-smollm2") == {real_models.smollm2_gguf.name: digest}


def test_a_safetensors_alone_is_published_and_says_the_config_is_missing(
    registry: Registry, real_models: RealModels, tmp_path: Path
) -> None:
    weights = (real_models.minilm_dir / "model.safetensors").read_bytes()
    source = _staged(registry.host, weights, "model.safetensors")
    env = _env(tmp_path)
    inspected = run_worker(["inspect", source, "--json"], env, timeout=120).result()
    assert inspected["notes"] == [
        "model.safetensors was uploaded alone: config.json is missing, so the architecture, "
        "family and context window stay unknown; upload the model's directory (or an archive "
        "of it) to have them"
    ]
    result = _prepare(source, registry.host, "cli/upload-lone-safetensors", env)
    assert result["resolved"]["format"] == "Safetensors"
    assert result["resolved"].get("architecture") is None  # MetadataPartial in the status


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/model.safetensors", bytes(256 << 20))
    return buffer.getvalue()


def _truncated_tar_zst(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(root / "config.json", arcname="m/config.json")
        archive.add(root / "model.safetensors", arcname="m/model.safetensors")
    data = zstandard.ZstdCompressor().compress(buffer.getvalue())
    return data[: len(data) * 2 // 3]


def _no_weights() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("m/README.md")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"hello\n"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("filename", "build", "reason", "message"),
    [
        ("m.tar.zst", lambda models: _truncated_tar_zst(models.minilm_dir), "UploadRejected",
         "m.tar.zst: the zstd stream is truncated; refusing to unpack it"),
        ("bomb.zip", lambda models: _zip_bomb(), "UploadRejected",
         r"bomb.zip: [\d,]+ bytes came out of [\d,]+ compressed bytes, more than 200:1 \(a "
         r"decompression bomb\?\); refusing to unpack it"),
        ("docs.tar", lambda models: _no_weights(), "NoSupportedWeights",
         re.escape("docs.tar: no safetensors or GGUF weights; found 1 file(s) without weights: "
                   "README.md")),
    ],
    ids=["truncated-zstd", "zip-bomb", "no-weights"],
)  # fmt: skip
def test_bad_uploads_fail_permanently_naming_the_reason(
    registry: Registry,
    real_models: RealModels,
    tmp_path: Path,
    filename: str,
    build: Any,
    reason: str,
    message: str,
) -> None:
    source = _staged(registry.host, build(real_models), filename)
    env = _env(tmp_path)
    run = run_worker(["prepare", source, "--to", f"{registry.host}/cli/bad:v1"], env, timeout=120)
    failure = run.failure(2)
    assert failure["reason"] == reason
    assert re.fullmatch(message, failure["message"]), failure["message"]
    if reason == "UploadRejected":  # a refused archive leaves nothing in the workspace
        assert [p.name for p in (tmp_path / "workspace").iterdir()] == [".ai-models"]
