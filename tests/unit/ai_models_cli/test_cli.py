"""``ai-models upload``: the arguments, the flow over a fake cluster and gateway, the exit codes
and what the user reads (never the token)."""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from typing import Any

import pytest

from ai_models_cli import cli
from ai_models_cli.cli import Context, Target, build_parser
from ai_models_cli.errors import CliError, GatewayError, ObjectNotFound
from ai_models_cli.gateway import GatewayClient
from ai_models_cli.kube import Cluster, Kind
from ai_models_cli.payload import open_payload
from tests.unit.ai_models_cli.fakegateway import FakeGateway, answer

TOKEN = "upload-uid-1.very-secret-token-value"
SECRET = {
    "url": "https://gw.example.com/v1/uploads/upload-uid-1",
    "inClusterURL": "http://ai-models-upload-gateway.d8-ai-models.svc:8444/v1/uploads/upload-uid-1",
    "token": TOKEN,
}
DIGEST = "sha256:" + "c" * 64


def model(phase: str | None, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "tuned", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"source": {"upload": {}}},
        "status": {"phase": phase, **status} if phase else {},
    }
    return obj


WAITING = model(
    "WaitForUpload",
    upload={"secretName": "upload-uid-1", "secretNamespace": "team-a"},
    conditions=[{"type": "Ready", "status": "False", "reason": "WaitForUpload", "message": "…"}],
)
READY = model(
    "Ready",
    artifact={"digest": DIGEST, "kind": "OCI", "sizeBytes": 5120, "mediaType": "m"},
    resolved={"architecture": "llama", "format": "GGUF", "parameterCount": 134515008},
    source={"resolvedType": "Upload", "resolvedRevision": "sha256:" + "d" * 64},
    conditions=[{"type": "Ready", "status": "True", "reason": "Published"}],
)


class FakeCluster(Cluster):
    def __init__(self, *objects: dict[str, Any]) -> None:
        self.namespace = "from-context"
        self.objects = list(objects)
        self.reads: list[tuple[str, str | None]] = []
        self.secrets: list[tuple[str, str]] = []

    def get_model(self, kind: Kind, name: str, namespace: str | None) -> dict[str, Any]:
        self.reads.append((name, namespace))
        if not self.objects:
            raise ObjectNotFound(f"{kind} {namespace}/{name} not found")
        return self.objects.pop(0) if len(self.objects) > 1 else self.objects[0]

    def read_secret(self, name: str, namespace: str) -> dict[str, str]:
        self.secrets.append((name, namespace))
        return dict(SECRET)


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(5_000))
    return path


def run(
    cluster: FakeCluster, path: Path, *extra: str, gateway: FakeGateway | None = None
) -> tuple[int, str, str, list[str]]:
    args = build_parser().parse_args(
        ["upload", "model", "tuned", "-n", "team-a", str(path), *extra]
    )
    out, err = io.StringIO(), io.StringIO()
    urls: list[str] = []
    gw = gateway or FakeGateway()

    def connect(url: str, token: str) -> GatewayClient:
        urls.append(url)
        assert token == TOKEN
        return gw

    ctx = Context(cluster, out, err, sleep=lambda s: None, clock=iter(range(10**6)).__next__)
    ctx.client = connect
    try:
        code = cli.upload(ctx, cli._target(args, cluster), open_payload(args.path), args)
    except CliError as error:
        err.write(f"{error}\n")
        code = error.exit_code
    assert TOKEN not in out.getvalue() + err.getvalue()
    return code, out.getvalue(), err.getvalue(), urls


def test_the_arguments_of_both_kinds() -> None:
    parser = build_parser()
    args = parser.parse_args(["upload", "model", "m", "-n", "ns", "dir", "--timeout", "60"])
    assert (args.kind, args.name, args.namespace, args.path, args.timeout) == (
        "model",
        "m",
        "ns",
        Path("dir"),
        60.0,
    )
    assert (args.in_cluster, args.no_wait, args.url) == (False, False, None)
    args = parser.parse_args(["upload", "clustermodel", "c", "f.gguf", "--in-cluster", "--no-wait"])
    assert (args.kind, args.name, args.in_cluster, args.no_wait) == (
        "clustermodel",
        "c",
        True,
        True,
    )
    assert "namespace" not in vars(args)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        # a ClusterModel has no namespace
        (["upload", "clustermodel", "c", "-n", "ns", "f.gguf"], "unrecognized arguments: -n"),
        (["upload", "model", "m"], "the following arguments are required: path"),
        (["upload", "dataset", "m", "p"], "invalid choice: 'dataset'"),
        (["upload", "model", "m", "p", "--timeout", "0"], "--timeout: must be more than 0"),
        (["upload", "model", "m", "p", "--timeout", "soon"], "not a number of seconds: 'soon'"),
    ],
)
def test_wrong_arguments_exit_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(argv)
    assert raised.value.code == 2
    assert error in capsys.readouterr().err


def test_a_model_without_namespace_is_in_the_context_namespace() -> None:
    args = build_parser().parse_args(["upload", "model", "m", "p"])
    assert cli._target(args, FakeCluster()) == Target("Model", "m", "from-context")


def test_an_upload_waits_for_the_session_sends_commits_and_prints_the_result(gguf: Path) -> None:
    pending = model("Pending")
    cluster = FakeCluster(pending, WAITING, WAITING, model("Publishing", progress="40%"), READY)
    gateway = FakeGateway()
    code, out, err, urls = run(cluster, gguf, gateway=gateway)
    assert code == 0
    assert urls == [SECRET["url"]]
    assert cluster.secrets == [("upload-uid-1", "team-a")]
    assert bytes(gateway.data) == gguf.read_bytes()
    assert out.splitlines() == [
        "model                    Model team-a/tuned",
        f"digest                   {DIGEST}",
        "sizeBytes                5,120",
        "mediaType                m",
        "architecture             llama",
        "format                   GGUF",
        "parameterCount           134,515,008",
        f"source                   Upload @ sha256:{'d' * 64}",
    ]
    assert "Model team-a/tuned: phase Publishing 40%\n" in err
    assert "sent 5,004 bytes in this run (resumed at 0)" in err


def test_in_cluster_and_url_choose_the_address(gguf: Path) -> None:
    _, _, _, urls = run(FakeCluster(WAITING, READY), gguf, "--in-cluster")
    assert urls == [SECRET["inClusterURL"]]
    _, _, _, urls = run(FakeCluster(WAITING, READY), gguf, "--url", "http://127.0.0.1:8444/")
    assert urls == ["http://127.0.0.1:8444/v1/uploads/upload-uid-1"]


def test_no_wait_returns_once_committed(gguf: Path) -> None:
    cluster = FakeCluster(WAITING)
    code, out, _, _ = run(cluster, gguf, "--no-wait")
    assert (code, out) == (0, "")


def test_a_failed_model_prints_its_reason_and_message_and_exits_1(gguf: Path) -> None:
    failed = model(
        "Failed",
        conditions=[
            {"type": "Ready", "status": "False", "reason": "NoSupportedWeights", "message": "none"}
        ],
    )
    code, _, err, _ = run(FakeCluster(WAITING, failed), gguf)
    assert code == 1
    assert err.endswith("Model team-a/tuned failed: NoSupportedWeights: none\n")


def test_a_permanent_gateway_answer_is_printed_exactly_and_exits_2(gguf: Path) -> None:
    gateway = FakeGateway()
    gateway.faults[0] = answer(410, "UploadExpired")
    code, _, err, _ = run(FakeCluster(WAITING), gguf, gateway=gateway)
    assert code == 2
    assert err.endswith("\nUploadExpired: UploadExpired for the test\n")


def test_a_transient_gateway_answer_exits_1_after_the_retries(gguf: Path) -> None:
    gateway = FakeGateway()
    gateway.head_error = GatewayError(503, "RegistryUnavailable", "the registry is down")
    code, _, err, _ = run(FakeCluster(WAITING), gguf, gateway=gateway)
    assert code == 1
    assert err.count("RegistryUnavailable: the registry is down; retrying in") == 8
    assert err.endswith("\nRegistryUnavailable: the registry is down\n")


def test_ctrl_c_leaves_a_resumable_upload_and_exits_130(gguf: Path) -> None:
    gateway = FakeGateway()

    def interrupted(gw: FakeGateway, offset: int, data: bytes) -> None:
        raise KeyboardInterrupt

    gateway.faults[0] = interrupted
    code, _, err, _ = run(FakeCluster(WAITING), gguf, gateway=gateway)
    assert code == 130
    assert err.endswith("interrupted at 0 bytes; run the same command again to resume\n")


def test_an_object_that_is_not_an_upload_is_refused(gguf: Path) -> None:
    hub = model("Ready")
    hub["spec"]["source"] = {"url": "https://huggingface.co/org/repo"}
    code, _, err, _ = run(FakeCluster(hub), gguf)
    assert (code, err) == (
        2,
        "Model team-a/tuned has no spec.source.upload: it is not filled by an upload\n",
    )


def test_a_ready_model_is_not_uploaded_again(gguf: Path) -> None:
    gateway = FakeGateway()
    code, out, err, _ = run(FakeCluster(READY), gguf, gateway=gateway)
    assert (code, gateway.calls) == (0, [])
    assert "is already Ready: nothing was uploaded" in err
    assert out.startswith("model                    Model team-a/tuned\n")


def test_no_session_within_the_timeout_exits_1(gguf: Path) -> None:
    pending = model(
        "Pending",
        conditions=[{"type": "Ready", "status": "False", "reason": "Queued", "message": "later"}],
    )
    code, _, err, _ = run(FakeCluster(pending), gguf, "--timeout", "5")
    assert code == 1
    assert err.endswith("Model team-a/tuned: not done within 5 s (phase Pending (Queued: later))\n")


def test_main_maps_a_missing_path_to_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["upload", "model", "m", "-n", "ns", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'absent'}: no such file or directory\n"


def test_only_the_kube_facade_imports_the_kubernetes_client() -> None:
    package = Path(cli.__file__).parent
    importing = sorted(
        p.name
        for p in package.glob("*.py")
        if any(
            line.startswith(("import kubernetes", "from kubernetes"))
            for line in p.read_text().splitlines()
        )
    )
    assert importing == ["kube.py"]


def test_namespace_argument_is_kept_apart_from_the_context() -> None:
    args = argparse.Namespace(kind="model", name="m", namespace="given")
    assert cli._target(args, FakeCluster()) == Target("Model", "m", "given")


def test_the_retries_take_no_real_time(gguf: Path) -> None:
    gateway = FakeGateway()
    gateway.head_error = GatewayError(503, "RegistryUnavailable", "the registry is down")
    started = time.monotonic()
    run(FakeCluster(WAITING), gguf, gateway=gateway)
    assert time.monotonic() - started < 5
