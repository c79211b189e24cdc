"""``ai-models-worker materialize`` on bad input, as a pod runs it: each failure is one JSON line
``{reason, message}`` on stderr with exit 2 (permanent), no traceback, nothing written outside
DIR; and identical layers (a real registry serving them) no longer crash it."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
import requests

from tests.ground.registry import Registry
from tests.integration.worker_cli_helpers import run_worker, worker_env
from tests.unit.worker.oci.artifacts import (
    CONFIG,
    MANIFEST,
    TAR,
    Layer,
    manifest_document,
    sha256,
    special,
    tar_of,
    tree,
    write_layout,
)

pytestmark = pytest.mark.integration

LICENSE = b"Apache License 2.0\n"
WEIGHTS = os.urandom(64 << 10)


def _push(registry: Registry, repository: str, blobs: list[bytes], manifest: bytes) -> str:
    """Blobs and a manifest straight into the registry (monolithic uploads); the digest."""
    base = f"http://{registry.host}/v2/{repository}"
    for blob in blobs:
        started = requests.post(f"{base}/blobs/uploads/", timeout=10)
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        if location.startswith("/"):
            location = f"http://{registry.host}{location}"
        joiner = "&" if "?" in location else "?"
        done = requests.put(f"{location}{joiner}digest={sha256(blob)}", data=blob, timeout=10)
        assert done.status_code == 201, done.text
    put = requests.put(
        f"{base}/manifests/{sha256(manifest)}",
        data=manifest,
        headers={"Content-Type": MANIFEST},
        timeout=10,
    )
    assert put.status_code == 201, put.text
    return f"{registry.host}/{repository}@{sha256(manifest)}"


def _env(tmp_path: Path) -> dict[str, str]:
    return worker_env(tmp_path, AI_MODELS_REGISTRY_INSECURE="true")


def test_identical_layers_from_a_registry_are_written_to_every_path(
    registry: Registry, tmp_path: Path
) -> None:
    layers = [Layer("model.safetensors", WEIGHTS), Layer("LICENSE", LICENSE),
              Layer("docs/LICENSE", LICENSE), Layer("extra/LICENSE", LICENSE)]  # fmt: skip
    document = manifest_document(tmp_path / "blobs", layers)
    ref = _push(registry, "cli/dupes", [b"{}", WEIGHTS, LICENSE], json.dumps(document).encode())
    out = tmp_path / "model"
    result = run_worker(["materialize", ref, "--to", str(out)], _env(tmp_path)).result()
    assert tree(out) == {layer.path: layer.data for layer in layers}
    assert [f["path"] for f in result["files"]] == [layer.path for layer in layers]


def test_a_deeply_nested_manifest_the_registry_accepted_is_invalid_weights(
    registry: Registry, tmp_path: Path
) -> None:
    document = manifest_document(tmp_path / "blobs", [Layer("LICENSE", LICENSE)])
    body = json.dumps(document).encode()
    deep = body[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}"  # an unknown field: accepted
    ref = _push(registry, "cli/deep", [b"{}", LICENSE], deep)
    run = run_worker(["materialize", ref, "--to", str(tmp_path / "model")], _env(tmp_path))
    assert run.failure(2) == {
        "reason": "InvalidWeights",
        "message": f"{ref}: the manifest nests deeper than 32 levels",
    }


def test_a_regular_file_as_dir_is_destination_not_a_directory(tmp_path: Path) -> None:
    ref = write_layout(tmp_path / "layout", [Layer("LICENSE", LICENSE)])
    target = tmp_path / "model"
    target.write_bytes(b"a file")
    run = run_worker(["materialize", ref, "--to", str(target)], _env(tmp_path))
    assert run.failure(2) == {
        "reason": "DestinationNotADirectory",
        "message": f"{target}: exists and is not a directory; give materialize --to a directory "
        "(or a path that does not exist yet)",
    }
    assert target.read_bytes() == b"a file"


def test_a_symlink_planted_at_a_file_path_is_unsafe_destination(tmp_path: Path) -> None:
    ref = write_layout(tmp_path / "layout", [Layer("LICENSE", LICENSE)])
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    victim.chmod(0o600)
    out = tmp_path / "model"
    out.mkdir()
    (out / "LICENSE").symlink_to(victim)
    run = run_worker(["materialize", ref, "--to", str(out)], _env(tmp_path))
    assert run.failure(2) == {
        "reason": "UnsafeDestination",
        "message": f"{out}/LICENSE: is a symlink; materialize never writes through links or "
        "special files in its directory: remove it (or use an empty directory) and run again",
    }
    assert victim.read_bytes() == b"precious"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_a_non_modelpack_config_is_unsupported_artifact(tmp_path: Path) -> None:
    def oci_image(document: dict[str, object]) -> None:
        document["config"] = {
            **document["config"],
            "mediaType": "application/vnd.oci.image.config.v1+json",
        }  # type: ignore[dict-item]

    ref = write_layout(tmp_path / "layout", [Layer("LICENSE", LICENSE)], oci_image)
    run = run_worker(["materialize", ref, "--to", str(tmp_path / "model")], _env(tmp_path))
    assert run.failure(2) == {
        "reason": "UnsupportedArtifact",
        "message": f"{ref}: the config media type is 'application/vnd.oci.image.config.v1+json',"
        f" not {CONFIG}: not a ModelPack artifact; publish it with ai-models prepare or modctl",
    }


def test_a_tar_layer_with_a_symlink_is_invalid_weights(tmp_path: Path) -> None:
    blob = tar_of([special("w/passwd", tarfile.SYMTYPE, "/etc/passwd")])
    ref = write_layout(tmp_path / "layout", [Layer("w", blob, TAR)])
    out = tmp_path / "model"
    run = run_worker(["materialize", ref, "--to", str(out)], _env(tmp_path))
    assert run.failure(2) == {
        "reason": "InvalidWeights",
        "message": f"{ref}: layer w ({sha256(blob)}): member 'w/passwd' is a symlink; refusing "
        "to unpack it",
    }
    assert not (out / "w" / "passwd").exists()
