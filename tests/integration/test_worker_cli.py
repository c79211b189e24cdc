"""``ai-models-worker`` as a pod runs it: a subprocess against the real registry (docker-registry),
the Hub emulator serving the real MiniLM, real disks — killed mid-upload, behind a registry that
answers 503, with wrong credentials, a dead registry, lying source checksums and a full disk.

Every run is judged by what a user sees: the exit code (0; 2 permanent; 1 transient), one JSON
line on stdout on success, and on failure one ``{reason, message}`` line on stderr (the same in
the termination log) with no traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import numpy as np
import pytest
from safetensors.numpy import save_file

from api.model import ResolvedMetadata
from oci.registry import RegistrySettings
from tests.ground.certs import CertificateAuthority
from tests.ground.hub import HubEmulator, RecordedRequest, run_hub
from tests.ground.hub_repo import MINILM, MINILM_TAGS, HubRepo, minilm_repo
from tests.ground.models import RealModels
from tests.ground.procs import free_port
from tests.ground.registry import Registry, run_registry
from tests.integration.oci.conftest import FaultProxy
from tests.integration.sources import builders
from tests.integration.worker_cli_helpers import (
    CountingProxy,
    Exchange,
    WorkerRun,
    docker_config,
    finish,
    on_tiny_tmpfs,
    registry_blob_file,
    run_worker,
    sha256_file,
    start_worker,
    worker_env,
)

pytestmark = pytest.mark.integration

MINILM_URL = f"https://huggingface.co/{MINILM}"
MINILM_FILES = (
    "1_Pooling/config.json",
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)
MINILM_RESOLVED = {
    "architecture": "BertModel",
    "contextWindowTokens": 512,
    "family": "bert",
    "format": "Safetensors",
    "parameterCount": 22713728,
    "sourceCapabilities": {
        "features": list(MINILM_TAGS),
        "provider": "HuggingFace",
        "tasks": ["sentence-similarity"],
    },
    "supportedEndpointTypes": ["Embeddings"],
}
WRONG_SHA256_REPO = "test/wrong-sha256"
HUB_TOKEN = "hf_cli_test_token_0123456789abcdef"
PASSWORD = "right-password-for-the-cli-test"
WRONG_PASSWORD = "wrong-password-for-the-cli-test"
THROTTLE_BYTES_PER_SECOND = 20e6
"""The weights then take about 4.5 s: long enough to kill the worker between two chunks."""
_CLOSED_RANGE = re.compile(r"^bytes=\d+-\d+$")


# ---- the ground: a Hub emulator of our own (we throttle it and add a lying repository) ---------


def _wrong_sha256_repo(root: Path) -> HubRepo:
    """A small safetensors model whose LFS sha256 (tree listing, ETag) is not its content's."""
    repo = HubRepo.from_dir(WRONG_SHA256_REPO, builders.small_repo(root))
    weight = repo.entries["model.safetensors"]
    wrong = hashlib.sha256(f"not these bytes {uuid.uuid4()}".encode()).hexdigest()
    repo.entries["model.safetensors"] = dataclasses.replace(weight, sha256=wrong)
    return repo


@pytest.fixture(scope="module")
def hub(real_models: RealModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEmulator]:
    with run_hub(page_size=5) as emulator:
        emulator.add(minilm_repo(real_models, refs=("main",)))
        emulator.add(_wrong_sha256_repo(tmp_path_factory.mktemp("wrong-sha256")))
        emulator.grant(HUB_TOKEN)
        yield emulator


@pytest.fixture
def env(hub: HubEmulator, tmp_path: Path) -> Callable[..., dict[str, str]]:
    """The worker's environment: this test's workspace and termination log, the emulator."""

    def make(**variables: str) -> dict[str, str]:
        defaults = {
            "HF_ENDPOINT": hub.url,
            "AI_MODELS_REGISTRY_INSECURE": "true",
            "AI_MODELS_WORKSPACE": str(tmp_path / "workspace"),
            "AI_MODELS_TERMINATION_LOG": str(tmp_path / "termination-log"),
        }
        return worker_env(tmp_path, **{**defaults, **variables})

    (tmp_path / "workspace").mkdir()
    return make


@dataclasses.dataclass(frozen=True)
class Published:
    repository: str
    result: dict[str, Any]

    @property
    def digest(self) -> str:
        return str(self.result["artifact"]["digest"])


@pytest.fixture(scope="module")
def published(
    hub: HubEmulator, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    """MiniLM prepared once, uninterrupted, into a fresh repository: the reference result."""
    home = tmp_path_factory.mktemp("published")
    repository = f"cli/minilm-{uuid.uuid4().hex[:8]}"
    run = run_worker(
        ["prepare", MINILM_URL, "--to", f"{registry.host}/{repository}:v1"],
        worker_env(home, HF_ENDPOINT=hub.url, AI_MODELS_REGISTRY_INSECURE="true",
                   AI_MODELS_WORKSPACE=str(home)),
    )  # fmt: skip
    return Published(repository, run.result())


def _failed(run: WorkerRun, exit_code: int, reason: str, termination_log: Path) -> str:
    """Asserts the failure contract; returns the message."""
    failure = run.failure(exit_code)
    assert failure["reason"] == reason, run.describe()
    # The termination message is the same {reason, message} plus the worker's last log lines
    # (timestamped text lines, worker/logs.py), within the kubelet's 4 KiB.
    text = termination_log.read_text()
    written = json.loads(text)
    assert {k: v for k, v in written.items() if k != "log"} == failure
    assert all(re.match(r"^\S+Z (info |warn |error) ", line) for line in written.get("log", []))
    assert len(text.encode()) <= 4096
    return failure["message"]


def _wait_for(condition: Callable[[], object], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the worker ended before {what}:\n{finish(process).describe()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} after 30 s:\n{finish(process).describe()}")
        time.sleep(0.02)


def _eventually(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after 10 s"
        time.sleep(0.02)


def _weight_downloads(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    """Reads of LFS objects (the CDN) that are not closed header ranges: weight transfers."""
    return [r for r in requests if r.server == "cdn" and not _CLOSED_RANGE.match(r.range or "")]


# ---- 1. SIGKILL mid-upload -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KilledThenRerun:
    killed: WorkerRun
    committed: int
    """Upload bytes the registry had accepted when the worker was killed."""
    weight_offset: int
    """Bytes of the weight's upload session the registry had accepted then."""
    rerun: WorkerRun
    rerun_exchanges: list[Exchange]
    rerun_hub_requests: list[RecordedRequest]


def _kill_mid_upload_and_rerun(
    hub: HubEmulator,
    proxy: CountingProxy,
    env: dict[str, str],
    *,
    deliver_half: bool,
) -> KilledThenRerun:
    """Runs ``prepare`` through ``proxy`` with the Hub throttled; the weight's PATCH (a
    streamed body, the whole file) is held by the proxy, which buffers whole requests
    (``deliver_half``: half of it reaches the registry) and the worker gets SIGKILL; then the
    same command runs again, unthrottled."""
    chunk = RegistrySettings().chunk_size
    args = ["prepare", MINILM_URL, "--to", f"{proxy.host}/cli/killed-{uuid.uuid4().hex[:8]}:v1"]
    hub.bytes_per_second = THROTTLE_BYTES_PER_SECOND
    hub.clear_requests()
    try:
        first = start_worker(args, env)
        proxy.hold_uploads(min_bytes=chunk, deliver_half=deliver_half)  # the weight's PATCH
        _wait_for(lambda: proxy.held_bytes, first, "the weight's PATCH in flight")
        first.send_signal(signal.SIGKILL)
        killed = finish(first)
    finally:
        hub.bytes_per_second = None
    committed = proxy.committed_upload_bytes()
    weight_offset = 0  # nothing of the weight was answered before the kill
    proxy.release()
    mark = len(proxy.exchanges)
    # The emulator logs the killed download once its next write fails; only then clear.
    _eventually(lambda: _weight_downloads(hub.requests), "the killed download in the log")
    hub.clear_requests()
    rerun = run_worker(args, env)
    assert killed.returncode == -signal.SIGKILL
    assert len(proxy.held_bytes) == 1
    assert proxy.held_bytes[0] > chunk
    return KilledThenRerun(
        killed, committed, weight_offset, rerun, proxy.exchanges[mark:], hub.requests
    )


def test_sigkill_mid_upload_then_the_same_command_resumes_where_the_registry_stopped(
    hub: HubEmulator,
    registry: Registry,
    published: Published,
    env: Callable[..., dict[str, str]],
    real_models: RealModels,
) -> None:
    chunk = RegistrySettings().chunk_size
    weight_size = (real_models.minilm_dir / "model.safetensors").stat().st_size
    proxy = CountingProxy(registry.host)
    try:
        runs = _kill_mid_upload_and_rerun(hub, proxy, env(), deliver_half=False)
    finally:
        proxy.close()

    assert runs.rerun.result()["artifact"] == published.result["artifact"]
    resent = sum(e.request_bytes for e in runs.rerun_exchanges if e.is_upload)
    size = published.result["artifact"]["sizeBytes"]
    assert resent <= size - runs.committed + chunk, (resent, size, runs.committed)
    # The registry never saw the held body, so the session is still good at the committed
    # offset (none of the weight): the rerun goes on in it, downloading the weight once.
    session_checks = [
        e.status for e in runs.rerun_exchanges if e.method == "GET" and "/blobs/uploads/" in e.path
    ]
    assert session_checks == [204]
    downloads = _weight_downloads(runs.rerun_hub_requests)
    assert runs.weight_offset == 0
    assert [(r.range, r.body_bytes) for r in downloads] == [(None, weight_size)]


def test_sigkill_while_a_chunk_reaches_the_registry_restarts_that_file_and_still_finishes(
    hub: HubEmulator,
    registry: Registry,
    published: Published,
    env: Callable[..., dict[str, str]],
    real_models: RealModels,
) -> None:
    """docker-registry writes a PATCH body as it arrives, and a session whose size is not the
    offset of the worker's last known location is cancelled on the next request: a worker
    killed while sending a chunk straight to the registry cannot resume that file. The next run
    must notice, start the file over and end with the same artifact."""
    weight_size = (real_models.minilm_dir / "model.safetensors").stat().st_size
    proxy = CountingProxy(registry.host)
    try:
        runs = _kill_mid_upload_and_rerun(hub, proxy, env(), deliver_half=True)
    finally:
        proxy.close()

    assert runs.rerun.result()["artifact"] == published.result["artifact"]
    session_checks = [
        e.status for e in runs.rerun_exchanges if e.method == "GET" and "/blobs/uploads/" in e.path
    ]
    assert session_checks == [404]  # the registry dropped the session
    downloads = _weight_downloads(runs.rerun_hub_requests)
    assert [(r.range, r.body_bytes) for r in downloads] == [(None, weight_size)]


def test_sigterm_mid_upload_ends_the_body_and_the_next_run_resumes_where_the_registry_stopped(
    hub: HubEmulator,
    registry: Registry,
    published: Published,
    env: Callable[..., dict[str, str]],
    real_models: RealModels,
    tmp_path: Path,
) -> None:
    """A pod deleted, evicted or drained gets SIGTERM, then SIGKILL after its grace period. The
    worker (PID 1 of its container, which drops signals it has no handler for) ends the weight's
    streamed body at its next piece, so docker-registry keeps those bytes in a valid session;
    it exits 1 (transient) with reason ``Interrupted``, and the next run downloads and sends only
    the rest of the weight."""
    weight_size = (real_models.minilm_dir / "model.safetensors").stat().st_size
    repository = f"cli/terminated-{uuid.uuid4().hex[:8]}"
    args = ["prepare", MINILM_URL, "--to", f"{registry.host}/{repository}:v1"]
    uploads = registry.storage / "docker/registry/v2/repositories" / repository / "_uploads"

    def at_registry() -> int:
        return max((data.stat().st_size for data in uploads.glob("*/data")), default=0)

    hub.bytes_per_second = THROTTLE_BYTES_PER_SECOND
    hub.clear_requests()
    try:
        first = start_worker(args, env())
        _wait_for(lambda: at_registry() >= 16 << 20, first, "16 MiB of the weight sent")
        first.send_signal(signal.SIGTERM)
        stopped = finish(first, timeout=15)
    finally:
        hub.bytes_per_second = None
    message = _failed(stopped, 1, "Interrupted", tmp_path / "termination-log")
    assert message.startswith("stopped by SIGTERM")
    kept = at_registry()
    assert 16 << 20 <= kept < weight_size
    _eventually(lambda: _weight_downloads(hub.requests), "the stopped download in the log")
    hub.clear_requests()

    rerun = run_worker(args, env())

    assert rerun.result()["artifact"] == published.result["artifact"]
    downloads = _weight_downloads(hub.requests)
    assert [(r.range, r.body_bytes) for r in downloads] == [(f"bytes={kept}-", weight_size - kept)]


# ---- 2. a registry that answers 503 for a while ----------------------------------------------


def test_a_registry_answering_503_for_a_while_is_retried_to_the_same_artifact(
    registry: Registry, published: Published, env: Callable[..., dict[str, str]]
) -> None:
    proxy = FaultProxy(registry)
    proxy.faults = ["503", "503", "503"]
    try:
        run = run_worker(
            ["prepare", MINILM_URL, "--to", f"{proxy.host}/cli/flaky-{uuid.uuid4().hex[:8]}:v1"],
            env(),
        )
    finally:
        proxy.close()
    assert run.result() == published.result
    assert proxy.faults == []
    refused, later = proxy.seen[:3], proxy.seen[3:]
    assert [request for request in refused if request not in later] == []  # each one retried


# ---- 3. the same source into the same repository again ---------------------------------------


def test_a_second_prepare_downloads_and_uploads_no_weight_bytes(
    hub: HubEmulator,
    registry: Registry,
    published: Published,
    env: Callable[..., dict[str, str]],
) -> None:
    counter = FaultProxy(registry)  # no faults planned: it only counts
    hub.clear_requests()
    try:
        run = run_worker(
            ["prepare", MINILM_URL, "--to", f"{counter.host}/{published.repository}:v1"], env()
        )
    finally:
        counter.close()
    assert run.result() == published.result
    assert counter.upload_bytes == 0
    assert _weight_downloads(hub.requests) == []
    header_reads = [r for r in hub.requests if r.server == "cdn"]
    assert [(r.method, r.status) for r in header_reads] == [("GET", 206)]


# ---- 4. materialize --------------------------------------------------------------------------


def test_materialize_reproduces_the_minilm_files_byte_for_byte(
    registry: Registry,
    published: Published,
    env: Callable[..., dict[str, str]],
    real_models: RealModels,
    tmp_path: Path,
) -> None:
    ref = f"{registry.host}/{published.repository}@{published.digest}"
    out = tmp_path / "model"
    result = run_worker(["materialize", ref, "--to", str(out)], env()).result()
    assert result["digest"] == published.digest
    assert sorted(f["path"] for f in result["files"]) == list(MINILM_FILES)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted([*MINILM_FILES, ".ai-models-materialized.json"])
    for path in MINILM_FILES:
        assert sha256_file(out / path) == sha256_file(real_models.minilm_dir / path), path


def test_materialize_refuses_a_blob_corrupted_on_the_registry_disk(
    registry: Registry, env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    # A model of its own: the registry's blob store is shared by every test of the session.
    model = tmp_path / "unique-model"
    model.mkdir()
    tensor = np.random.default_rng().standard_normal((64, 64)).astype("float32")
    save_file({"lm_head.weight": tensor}, str(model / "model.safetensors"))
    (model / "config.json").write_text(json.dumps(builders.llama_config()))
    repository = f"cli/corrupt-{uuid.uuid4().hex[:8]}"
    prepared = run_worker(
        ["prepare", str(model), "--to", f"{registry.host}/{repository}:v1"], env()
    ).result()
    weight = "sha256:" + sha256_file(model / "model.safetensors")
    blob = registry_blob_file(registry.storage, weight)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))

    out = tmp_path / "out"
    ref = f"{registry.host}/{repository}@{prepared['artifact']['digest']}"
    run = run_worker(["materialize", ref, "--to", str(out)], env())
    message = _failed(run, 2, "InvalidWeights", tmp_path / "termination-log")
    corrupt = "sha256:" + hashlib.sha256(data).hexdigest()
    assert message == (
        f"model.safetensors: blob {weight} from {ref} has sha256 {corrupt}, the manifest says "
        f"{weight}: the stored copy is corrupt; republish the model"
    )
    assert not (out / "model.safetensors").exists()


# ---- 5. bad input ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SecureRegistry:
    registry: Registry
    wrong_docker_config: Path


@pytest.fixture(scope="module")
def secure_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRegistry]:
    """docker-registry with TLS (our own CA) and htpasswd; a docker config with a wrong password."""
    work = tmp_path_factory.mktemp("cli-secure-registry")
    authority = CertificateAuthority(work / "pki")
    server = authority.issue("registry", "127.0.0.1", hosts=("127.0.0.1",), server=True)
    htpasswd = work / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    htpasswd.write_text(f"pusher:{hashed}\n")
    with run_registry(work, tls=server, ca_cert=authority.cert, htpasswd=htpasswd) as registry:
        wrong = docker_config(work / "wrong", registry.host, "pusher", WRONG_PASSWORD)
        yield SecureRegistry(registry, wrong)


def test_wrong_registry_credentials_are_permanent_and_never_printed(
    secure_registry: SecureRegistry, env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    registry = secure_registry.registry
    assert registry.ca_cert is not None
    run = run_worker(
        ["prepare", MINILM_URL, "--to", f"{registry.host}/cli/secret:v1"],
        env(
            AI_MODELS_REGISTRY_INSECURE="false",
            AI_MODELS_REGISTRY_CA=str(registry.ca_cert),
            DOCKER_CONFIG=str(secure_registry.wrong_docker_config),
        ),
    )
    message = _failed(run, 2, "RegistryUnauthorized", tmp_path / "termination-log")
    assert re.fullmatch(
        r"HEAD blob sha256:[0-9a-f]{64} in cli/secret: registry answered 401; check the registry "
        r"credentials \(the docker config 'auths' entry for this host\) and that they may push "
        r"and pull this repository",
        message,
    ), message
    encoded = (secure_registry.wrong_docker_config / "config.json").read_text()
    token = json.loads(encoded)["auths"][registry.host]["auth"]
    outputs = run.stdout + run.stderr + (tmp_path / "termination-log").read_text()
    for secret in (WRONG_PASSWORD, PASSWORD, token):
        assert secret not in outputs


def test_an_unreachable_registry_is_transient(
    env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    # The CLI has no setting for the registry retry budget: this waits the default backoff
    # (0.5 + 1 + 2 + 4 + 8 s over 6 attempts).
    closed = f"127.0.0.1:{free_port()}"
    run = run_worker(["prepare", MINILM_URL, "--to", f"{closed}/cli/unreachable:v1"], env())
    message = _failed(run, 1, "RegistryUnavailable", tmp_path / "termination-log")
    assert re.fullmatch(
        rf"registry ConnectionError after 6 attempts: HEAD /v2/cli/unreachable/blobs/"
        rf"sha256:[0-9a-f]{{64}} at {re.escape(closed)}",
        message,
    ), message


@pytest.mark.parametrize("dest", ["registry", "layout"])
def test_source_bytes_that_do_not_match_the_advertised_sha256_are_invalid_weights(
    hub: HubEmulator,
    registry: Registry,
    env: Callable[..., dict[str, str]],
    tmp_path: Path,
    dest: str,
) -> None:
    entry = hub.repos[WRONG_SHA256_REPO].entries["model.safetensors"]
    actual = "sha256:" + sha256_file(entry.source)
    to = (
        f"{registry.host}/cli/wrong-sha-{uuid.uuid4().hex[:8]}:v1"
        if dest == "registry"
        else str(tmp_path / "layout")
    )
    hub.clear_requests()
    run = run_worker(["prepare", f"https://huggingface.co/{WRONG_SHA256_REPO}", "--to", to], env())
    message = _failed(run, 2, "InvalidWeights", tmp_path / "termination-log")
    got = "other content (the registry refused it)" if dest == "registry" else actual
    assert message == (
        f"model.safetensors: the content does not match its announced sha256 "
        f"(sha256:{entry.sha256}, got {got}); the source served other bytes than it lists; "
        "publish again, or prepare another revision as a new Model"
    )
    # One retry (a corruption in transit would pass the second time), then the verdict.
    assert [r.range for r in _weight_downloads(hub.requests)] == [None, None]


def test_a_destination_that_is_neither_a_reference_nor_a_path_is_invalid(
    env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    run = run_worker(["prepare", MINILM_URL, "--to", "not a ref!"], env())
    message = _failed(run, 2, "InvalidDestination", tmp_path / "termination-log")
    assert message == "'not a ref!': expected host[:port]/repository[:tag][@digest]"


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="a private tmpfs mount (unshare --mount) needs root"
)


@needs_root
def test_a_full_disk_under_a_layout_destination_is_insufficient_storage(
    env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    small = tmp_path / "small-disk"
    small.mkdir()
    layout = small / "layout"
    run = run_worker(
        ["prepare", MINILM_URL, "--to", str(layout)],
        env(AI_MODELS_WORKSPACE=str(small)),
        wrapper=on_tiny_tmpfs(small, "1m"),
    )
    message = _failed(run, 2, "InsufficientStorage", tmp_path / "termination-log")
    assert re.fullmatch(
        rf"{re.escape(str(layout))}: no space left on its device while writing blob "
        r"sha256:[0-9a-f]{64} \(No space left on device\); free space or use a larger volume, "
        r"then run again \(the model's files take 91,578,367 bytes\)",
        message,
    ), message


@needs_root
def test_a_full_workspace_does_not_stop_a_push_to_a_registry(
    registry: Registry,
    published: Published,
    env: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    # The workspace only keeps upload sessions for a restarted pod; the registry takes the bytes.
    small = tmp_path / "full-workspace"
    small.mkdir()
    run = run_worker(
        ["prepare", MINILM_URL, "--to", f"{registry.host}/cli/full-ws-{uuid.uuid4().hex[:8]}:v1"],
        env(AI_MODELS_WORKSPACE=str(small)),
        wrapper=on_tiny_tmpfs(small, "1m", fill=True),
    )
    assert run.result() == published.result
    assert " warn  workspace full: upload sessions are not kept file=" in run.stderr


@needs_root
def test_materialize_onto_a_full_disk_is_insufficient_storage(
    registry: Registry,
    published: Published,
    env: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    small = tmp_path / "small-disk"
    small.mkdir()
    ref = f"{registry.host}/{published.repository}@{published.digest}"
    run = run_worker(
        ["materialize", ref, "--to", str(small / "model")], env(), wrapper=on_tiny_tmpfs(small)
    )
    message = _failed(run, 2, "InsufficientStorage", tmp_path / "termination-log")
    assert message == (
        f"{small / 'model'}: no space left on its device (No space left on device); free space "
        "or give the worker a larger volume, then run again"
    )


# ---- 6. inspect ------------------------------------------------------------------------------


def test_inspect_json_prints_the_status_shapes_and_reads_no_weight_data(
    hub: HubEmulator, env: Callable[..., dict[str, str]], real_models: RealModels
) -> None:
    hub.clear_requests()
    found = run_worker(["inspect", MINILM_URL, "--json"], env()).result()
    assert sorted(found) == ["files", "notes", "resolved", "source"]
    resolved = ResolvedMetadata.model_validate(found["resolved"])
    assert (
        resolved.architecture,
        resolved.family,
        resolved.format,
        resolved.parameter_count,
        resolved.context_window_tokens,
    ) == ("BertModel", "bert", "Safetensors", 22713728, 512)
    assert found["resolved"] == MINILM_RESOLVED
    commit = hub.repos[MINILM].commit
    assert found["source"] == {"resolvedType": "HuggingFace", "resolvedRevision": commit}
    weight = real_models.minilm_dir / "model.safetensors"
    expected_files = [
        {
            "path": path,
            "size": (real_models.minilm_dir / path).stat().st_size,
            "role": "weight" if path == "model.safetensors" else "doc" if path == "README.md"
            else "config",
        }
        for path in MINILM_FILES
    ]  # fmt: skip
    expected_files[MINILM_FILES.index("model.safetensors")]["sha256"] = sha256_file(weight)
    assert found["files"] == expected_files
    assert found["notes"] == [
        f"pinned the default branch of {MINILM} to commit {commit}",
        "dropped 1 file(s) not needed: data_config.json",
    ]
    weight_reads = [r for r in hub.requests if r.server == "cdn"]
    assert _weight_downloads(hub.requests) == []
    assert [(r.method, r.status) for r in weight_reads] == [("GET", 206)]
    assert sum(r.body_bytes for r in weight_reads) <= 1 << 20


@pytest.mark.parametrize(
    ("token", "reason", "message"),
    [
        (
            None,
            "SourceUnauthorized",
            "test/does-not-exist: the Hub answered 401 to an anonymous request: the repository "
            "does not exist or is private; a Model's source cannot change: delete the Model and "
            "create it again with the right URL, or with an authSecretRef whose Secret holds a "
            "token that can read it",
        ),
        (
            HUB_TOKEN,
            "SourceNotFound",
            "test/does-not-exist: the repository does not exist, or the token has no access to "
            "it (Repository not found)",
        ),
    ],
)
def test_inspect_of_a_missing_repository_fails_permanently(
    env: Callable[..., dict[str, str]],
    tmp_path: Path,
    token: str | None,
    reason: str,
    message: str,
) -> None:
    variables = {"HF_TOKEN": token} if token else {}
    run = run_worker(
        ["inspect", "https://huggingface.co/test/does-not-exist", "--json"], env(**variables)
    )
    assert _failed(run, 2, reason, tmp_path / "termination-log") == message
