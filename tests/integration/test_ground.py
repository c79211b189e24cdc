"""The test ground itself works: the real Job and garbage-collector controllers act, RBAC is
enforced, the registry stores and deletes OCI artifacts byte for byte, the real models are there."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.ground.controlplane import ControlPlane
from tests.ground.models import RealModels
from tests.ground.registry import Registry

NAMESPACE = "ground"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def namespace(control_plane: ControlPlane) -> str:
    control_plane.kubectl_run("create", "namespace", NAMESPACE)
    return NAMESPACE


def job_pods(plane: ControlPlane, job: str) -> list[dict[str, Any]]:
    out = plane.kubectl_run("get", "pods", "-n", NAMESPACE, "-l", f"job-name={job}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def test_job_controller_creates_pods_and_garbage_collector_removes_them(
    control_plane: ControlPlane, namespace: str
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "ground-job"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "example.invalid/none:1"}],
                }
            },
        },
    }
    created = control_plane.kubectl_run("create", "-n", namespace, "-f", "-", stdin=json.dumps(job))
    assert created.returncode == 0, created.stderr
    pods = wait_for(lambda: job_pods(control_plane, "ground-job"))
    assert len(pods) == 1
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Job", "ground-job", True)

    deleted = control_plane.kubectl_run(
        "delete", "job", "ground-job", "-n", namespace, "--cascade=background", "--wait=false"
    )
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: not job_pods(control_plane, "ground-job"))


def test_rbac_is_enforced_for_service_accounts(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    assert (
        control_plane.kubectl_run("create", "serviceaccount", "nobody", "-n", namespace).returncode
        == 0
    )
    token = control_plane.kubectl_run(
        "create", "token", "nobody", "-n", namespace, "--duration=10m"
    )
    assert token.returncode == 0, token.stderr
    kubeconfig = control_plane.write_kubeconfig(
        tmp_path / "nobody", {"token": token.stdout.strip()}
    )
    result = control_plane.kubectl_run("get", "secrets", "-n", namespace, kubeconfig=kubeconfig)
    assert result.returncode != 0
    assert (
        'secrets is forbidden: User "system:serviceaccount:ground:nobody" cannot list resource '
        '"secrets" in API group "" in the namespace "ground"'
    ) in result.stderr
    whoami = control_plane.kubectl_run(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig
    )
    assert whoami.stdout == "system:serviceaccount:ground:nobody"


def http(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def push_blob(registry: Registry, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = http("POST", f"{registry.url}/v2/{repo}/blobs/uploads/")
    assert status == 202
    location = headers["Location"]
    sep = "&" if "?" in location else "?"
    target = location if location.startswith("http") else registry.url + location
    status, _, _ = http(
        "PUT", f"{target}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"}
    )
    assert status == 201
    return digest


def test_registry_stores_oci_artifacts_byte_for_byte_and_deletes(registry: Registry) -> None:
    repo = "ground/model"
    config = b'{"descriptor":{}}'
    layer = b"weights" * 1000
    config_digest, layer_digest = (
        push_blob(registry, repo, config),
        push_blob(registry, repo, layer),
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.cncf.model.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.cncf.model.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.cncf.model.weight.v1.raw",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    status, headers, _ = http(
        "PUT", f"{registry.url}/v2/{repo}/manifests/v1", manifest, {"Content-Type": OCI_MANIFEST}
    )
    assert status == 201
    digest = headers["Docker-Content-Digest"]
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    status, _, body = http(
        "GET", f"{registry.url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
    )
    assert (status, body) == (200, manifest)
    status, _, body = http(
        "GET", f"{registry.url}/v2/{repo}/blobs/{layer_digest}", headers={"Range": "bytes=0-6"}
    )
    assert (status, body) == (206, b"weights")
    assert http("DELETE", f"{registry.url}/v2/{repo}/manifests/{digest}")[0] == 202
    assert (
        http(
            "GET", f"{registry.url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
        )[0]
        == 404
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_real_models_are_the_genuine_files(real_models: RealModels) -> None:
    weights = real_models.minilm_dir / "model.safetensors"
    assert weights.stat().st_size == 90_868_376
    assert (
        sha256_file(weights) == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    )
    assert json.loads((real_models.minilm_dir / "config.json").read_text())["architectures"] == [
        "BertModel"
    ]
    assert real_models.smollm2_gguf.stat().st_size == 98_362_432
    assert (
        sha256_file(real_models.smollm2_gguf)
        == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    )
    with real_models.smollm2_gguf.open("rb") as f:
        assert f.read(4) == b"GGUF"
