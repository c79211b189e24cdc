"""Uploads end to end: ``ai-models upload`` (the real CLI, as a user with the ``edit`` role)
→ the upload gateway replicas → the registry → the preparation Job → Ready.

The CLI runs as a subprocess (``python -m ai_models_cli``). Where a test cuts the connection it
sends the CLI's traffic through ``LoopbackProxy``, which counts the bytes the CLI sent and can
throttle them, so the cut lands mid-upload and the second run's bytes are measured outside the
CLI. SIGKILL goes to the CLI process only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from ai_models_cli.payload import open_payload
from api.protocol import RETRY_ANNOTATION
from tests.e2e.conftest import (
    JSON,
    REPO,
    ControllerProcess,
    RestartableRegistry,
    controller_kubeconfig,
    get_json,
    service_account_kubeconfig,
    wait_for,
)
from tests.e2e.helpers import apply, get_model, manifest, model, namespace, wait_phase
from tests.ground.controlplane import ControlPlane
from tests.ground.gateway import GatewayReplica
from tests.ground.hub import HubEmulator
from tests.ground.models import RealModels
from tests.ground.nodeemu import NodeEmulator

MINILM_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
MIB = 1 << 20


# ---- helpers ----------------------------------------------------------------------------------


def upload_model(name: str, ns: str) -> JSON:
    return {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"source": {"upload": {}}},
    }


def editor_kubeconfig(plane: ControlPlane, ns: str, work: Path) -> Path:
    """A namespace user with the built-in ``edit`` role (the chart aggregates Models into it)."""
    for args in (
        ("create", "serviceaccount", "uploader", "-n", ns),
        ("create", "rolebinding", "uploader-edit", "--clusterrole=edit",
         f"--serviceaccount={ns}:uploader", "-n", ns),
    ):  # fmt: skip
        result = plane.kubectl_run(*args)
        assert result.returncode == 0 or "AlreadyExists" in result.stderr, result.stderr
    return service_account_kubeconfig(plane, "uploader", ns, work / f"{ns}-uploader.kubeconfig")


def cli(kubeconfig: Path, name: str, ns: str, path: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "AI_MODELS_"))}
    env.update(KUBECONFIG=str(kubeconfig), PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost")
    return subprocess.Popen(
        [sys.executable, "-m", "ai_models_cli", "upload", "model", name, "-n", ns, str(path),
         "--timeout", "300", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def session(plane: ControlPlane, name: str, ns: str) -> tuple[JSON, dict[str, str]]:
    """The object in WaitForUpload, and its session Secret's data (read as the admin)."""
    obj = wait_phase(plane, name, ns, "WaitForUpload", timeout=60)
    upload = obj["status"]["upload"]
    secret = get_json(plane, "secret", upload["secretName"], "-n", upload["secretNamespace"])
    data = {k: _b64(v) for k, v in secret["data"].items()}
    return obj, data


def _b64(value: str) -> str:
    return base64.b64decode(value).decode()


def head_offset(url: str, token: str) -> int:
    response = requests.head(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    return int(response.headers.get("Upload-Offset", "0")) if response.status_code == 200 else 0


def layers(registry: RestartableRegistry, obj: JSON) -> list[tuple[str, str, int]]:
    meta = obj["metadata"]
    code, body, digest = manifest(
        registry.url, f"ai-models/model/{meta['namespace']}/{meta['name']}", meta["uid"]
    )
    assert code == 200
    assert digest == obj["status"]["artifact"]["digest"]
    return sorted(
        (layer["annotations"]["org.cncf.model.filepath"], layer["digest"], layer["size"])
        for layer in body["layers"]
    )


def stream_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for block in open_payload(path).blocks():
        digest.update(block)
    return f"sha256:{digest.hexdigest()}"


class LoopbackProxy:
    """127.0.0.1:<port> → ``target``; counts the bytes the client sent; optional throttle."""

    def __init__(self, target: str, bytes_per_second: float | None = None) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self._target = (host, int(port))
        self.bytes_per_second = bytes_per_second
        self.sent = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(64 * 1024):
                if upstream:
                    with self._lock:
                        self.sent += len(data)
                    if self.bytes_per_second:
                        time.sleep(len(data) / self.bytes_per_second)
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()


@contextlib.contextmanager
def proxy(target: str, bytes_per_second: float | None = None) -> Iterator[LoopbackProxy]:
    front = LoopbackProxy(target, bytes_per_second)
    try:
        yield front
    finally:
        front.close()


def cut_at_half(
    plane: ControlPlane, kubeconfig: Path, name: str, ns: str, path: Path, gateway: GatewayReplica
) -> tuple[int, dict[str, str]]:
    """Runs the CLI through a throttled proxy to ``gateway`` and SIGKILLs it once HEAD says half
    of the upload is in; the size of the upload and the session Secret."""
    _, secret = session(plane, name, ns)
    size = open_payload(path).size
    with proxy(gateway.url, bytes_per_second=12 * MIB) as front:
        first = cli(kubeconfig, name, ns, path, "--url", front.url, "--no-wait")
        # Not wait_for: when the CLI ends early or stalls, its output must be in the failure
        # (an e2e run once waited 120 s here for an offset that never came, output lost).
        deadline, offset = time.monotonic() + 120, 0
        while first.poll() is None and time.monotonic() < deadline:
            offset = head_offset(secret["url"], secret["token"])
            if offset >= size // 2:
                break
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)  # a no-op when it already ended
        _, err = first.communicate(timeout=10)
        assert offset >= size // 2, (offset, size, first.returncode, err[-3000:])
    offset = head_offset(secret["url"], secret["token"])
    assert size // 2 <= offset < size, (offset, size)
    return size, secret


# ---- the tests --------------------------------------------------------------------------------


@pytest.fixture
def ns_editor(
    control_plane: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[str, Path]:
    ns = namespace(
        control_plane,
        f"up-{request.node.name.removeprefix('test_')[:20].replace('_', '-').rstrip('-')}",
    )
    return ns, editor_kubeconfig(control_plane, ns, tmp_path)


def test_minilm_directory_upload_is_the_hugging_face_artifact(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    upload_gateways: list[GatewayReplica],
    e2e_registry: RestartableRegistry,
    hub: HubEmulator,
    real_models: RealModels,
    ns_editor: tuple[str, Path],
) -> None:
    ns, kubeconfig = ns_editor
    apply(control_plane, model("from-hub", MINILM_URL, ns))
    apply(control_plane, upload_model("uploaded", ns))
    code, out, err = finish(cli(kubeconfig, "uploaded", ns, real_models.minilm_dir))
    assert code == 0, err
    uploaded = get_model(control_plane, "uploaded", ns)
    from_hub = wait_phase(control_plane, "from-hub", ns, "Ready", "Failed")
    assert from_hub["status"]["phase"] == "Ready", json.dumps(from_hub["status"])
    st = uploaded["status"]
    assert st["phase"] == "Ready", json.dumps(st)
    # The same files, byte for byte: the same layers; the same inspection.
    assert layers(e2e_registry, uploaded) == layers(e2e_registry, from_hub)
    # The same inspection; only the provider of the capabilities differs (the Hub's tags).
    hub_capabilities = from_hub["status"]["resolved"].pop("sourceCapabilities")
    assert hub_capabilities["provider"] == "HuggingFace"
    assert st["resolved"].pop("sourceCapabilities") == {"provider": "Upload"}
    assert st["resolved"] == from_hub["status"]["resolved"]
    assert st["source"] == {
        "resolvedType": "Upload",
        "resolvedRevision": stream_digest(real_models.minilm_dir),
    }
    # What the CLI printed is what status says.
    print(out, err, sep="\n")
    assert f"digest                   {st['artifact']['digest']}\n" in out
    assert "architecture             BertModel\n" in out
    assert "uploading model.tar (" in err
    # The session is cleaned up once Ready.
    secret = wait_for(
        lambda: (
            not get_json(
                control_plane, "secret", "-n", ns, "-l", "app.kubernetes.io/managed-by=ai-models"
            )["items"]
        ),
        60,
    )
    assert secret is True


def test_smollm2_gguf_single_file_goes_ready(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    upload_gateways: list[GatewayReplica],
    e2e_registry: RestartableRegistry,
    real_models: RealModels,
    ns_editor: tuple[str, Path],
) -> None:
    """samples/model-upload.yaml as written, and the command its comment shows."""
    ns, kubeconfig = ns_editor
    applied = control_plane.kubectl_run(
        "apply", "-n", ns, "-f", str(REPO / "samples" / "model-upload.yaml")
    )
    assert applied.returncode == 0, applied.stderr
    _, secret = session(control_plane, "my-finetune", ns)
    code, out, err = finish(cli(kubeconfig, "my-finetune", ns, real_models.smollm2_gguf))
    assert code == 0, err
    assert secret["token"] not in out + err
    obj = get_model(control_plane, "my-finetune", ns)
    st = obj["status"]
    assert st["phase"] == "Ready"
    resolved = st["resolved"]
    assert (resolved["architecture"], resolved["format"], resolved["quantization"]) == (
        "llama",
        "GGUF",
        "Q4_1",
    )
    assert resolved["parameterCount"] == 134_515_008
    file_digest = f"sha256:{hashlib.sha256(real_models.smollm2_gguf.read_bytes()).hexdigest()}"
    assert st["source"] == {"resolvedType": "Upload", "resolvedRevision": file_digest}
    size = real_models.smollm2_gguf.stat().st_size
    assert [(d, s) for _, d, s in layers(e2e_registry, obj) if s == size] == [(file_digest, size)]
    assert "parameterCount           134,515,008\n" in out


def test_a_cut_connection_resumes_from_the_committed_offset(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    upload_gateways: list[GatewayReplica],
    real_models: RealModels,
    ns_editor: tuple[str, Path],
) -> None:
    ns, kubeconfig = ns_editor
    path = real_models.smollm2_gguf
    apply(control_plane, upload_model("cut", ns))
    size, _ = cut_at_half(control_plane, kubeconfig, "cut", ns, path, upload_gateways[0])
    with proxy(upload_gateways[0].url) as front:
        code, _, err = finish(cli(kubeconfig, "cut", ns, path, "--url", front.url))
        second = front.sent
    assert code == 0, err
    assert "resuming at " in err
    print(f"second run sent {second:,} bytes of {size:,} ({second / size:.0%})")
    assert second < 0.6 * size, (second, size)
    assert get_model(control_plane, "cut", ns)["status"]["phase"] == "Ready"


def test_the_resume_lands_on_the_other_replica_and_works(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    upload_gateways: list[GatewayReplica],
    e2e_registry: RestartableRegistry,
    real_models: RealModels,
    ns_editor: tuple[str, Path],
) -> None:
    """A directory (the tar stream regenerated and its prefix skipped) begun on replica 1 and
    finished on replica 2."""
    ns, kubeconfig = ns_editor
    path = real_models.minilm_dir
    apply(control_plane, upload_model("replicas", ns))
    size, _ = cut_at_half(control_plane, kubeconfig, "replicas", ns, path, upload_gateways[0])
    with proxy(upload_gateways[1].url) as front:
        code, _, err = finish(cli(kubeconfig, "replicas", ns, path, "--url", front.url))
        second = front.sent
    assert code == 0, err
    print(f"second run (replica 2) sent {second:,} bytes of {size:,} ({second / size:.0%})")
    assert 0 < second < 0.6 * size, (second, size)
    obj = get_model(control_plane, "replicas", ns)
    assert obj["status"]["phase"] == "Ready"
    assert obj["status"]["source"]["resolvedRevision"] == stream_digest(path)
    weights = [d for p, d, _ in layers(e2e_registry, obj) if p == "model.safetensors"]
    expected = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert weights == [f"sha256:{expected}"]


@pytest.fixture
def short_ttl_controller(
    control_plane: ControlPlane, controller: ControllerProcess, tmp_path: Path
) -> Iterator[ControllerProcess]:
    """The package's controller replaced by one whose sessions expire after 60 s (the least the
    configuration takes); the package's controller is back afterwards."""
    config = yaml.safe_load(controller.config.read_text())
    config["upload"]["sessionTTLSeconds"] = 60
    path = tmp_path / "short-ttl.yaml"
    path.write_text(yaml.safe_dump(config))
    controller.stop()
    short = ControllerProcess(
        path, controller_kubeconfig(control_plane, tmp_path), tmp_path / "short"
    )
    short.start()
    try:
        yield short
    finally:
        short.stop()
        controller.start()


def test_an_expired_session_fails_and_the_retry_annotation_opens_a_new_one(
    control_plane: ControlPlane,
    short_ttl_controller: ControllerProcess,
    node: NodeEmulator,
    upload_gateways: list[GatewayReplica],
    real_models: RealModels,
    ns_editor: tuple[str, Path],
) -> None:
    ns, kubeconfig = ns_editor
    apply(control_plane, upload_model("expiring", ns))
    obj, secret = session(control_plane, "expiring", ns)
    first = obj["status"]["upload"]["secretName"]
    failed = wait_phase(control_plane, "expiring", ns, "Failed", timeout=150)
    ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "UploadExpired"
    assert not get_json(control_plane, "secret", first, "-n", ns)
    response = requests.head(
        secret["url"], headers={"Authorization": f"Bearer {secret['token']}"}, timeout=5
    )
    assert response.status_code in (401, 410)
    result = control_plane.kubectl_run(
        "annotate", "model", "expiring", "-n", ns, f"{RETRY_ANNOTATION}=1"
    )
    assert result.returncode == 0, result.stderr
    obj, _ = session(control_plane, "expiring", ns)
    assert obj["status"]["upload"]["secretName"] != first
    code, _, err = finish(cli(kubeconfig, "expiring", ns, real_models.smollm2_gguf))
    assert code == 0, err
    assert get_model(control_plane, "expiring", ns)["status"]["phase"] == "Ready"
