"""One source prepared as many Models moves its weight bytes from the source once.

``ai-models-worker prepare`` as a Job runs it, against the Hub emulator serving the real MiniLM
and the real registry: the first preparation downloads the weights into repository A; later
ones, told ``AI_MODELS_MOUNT_FROM=A`` (as the controller's Job does), mount the blobs whose
sha256 the Hub states from A and download no weight byte. Two spellings of the repository at
one commit (``/tree/v1.0`` on ``hf.co``, the plain URL) give one artifact digest.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ground.hub import HubEmulator, RecordedRequest, run_hub
from tests.ground.hub_repo import MINILM, minilm_repo
from tests.ground.models import RealModels
from tests.ground.registry import Registry
from tests.integration.worker_cli_helpers import run_worker, worker_env

pytestmark = pytest.mark.integration

PLAIN = f"https://huggingface.co/{MINILM}"
SPELLED = f"https://hf.co/{MINILM}/tree/v1.0/"
COPIES = 10


@pytest.fixture(scope="module")
def hub(real_models: RealModels) -> Iterator[HubEmulator]:
    with run_hub() as emulator:
        emulator.add(minilm_repo(real_models))
        yield emulator


def prepare(
    hub: HubEmulator, registry: Registry, home: Path, url: str, repository: str, *mount: str
) -> tuple[dict[str, object], list[RecordedRequest]]:
    hub.clear_requests()
    variables = {"HF_ENDPOINT": hub.url, "AI_MODELS_REGISTRY_INSECURE": "true"}
    if mount:
        variables["AI_MODELS_MOUNT_FROM"] = ",".join(mount)
    run = run_worker(
        ["prepare", url, "--to", f"{registry.host}/{repository}:v1"],
        worker_env(home, AI_MODELS_WORKSPACE=str(home), **variables),
    )
    return run.result(), hub.requests


def served(requests: list[RecordedRequest]) -> int:
    return sum(r.body_bytes for r in requests)


def weight_bytes(hub: HubEmulator, requests: list[RecordedRequest]) -> int:
    """Body bytes of the LFS (weight) files, header probes included."""
    repo = hub.repos[MINILM]
    lfs_paths = {f"/{e.sha256}" for e in repo.entries.values() if e.lfs}
    return sum(
        r.body_bytes
        for r in requests
        if r.server == "cdn" and any(r.path.endswith(p) for p in lfs_paths)
    )


def manifest(registry: Registry, repository: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://{registry.host}/v2/{repository}/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        document: dict[str, object] = json.loads(response.read())
        return document


def test_ten_models_of_one_source_download_the_weights_once(
    hub: HubEmulator, registry: Registry, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    first_repo = f"mount/{run}/model-0"
    first, requests = prepare(hub, registry, tmp_path / "0", PLAIN, first_repo)
    one_model = served(requests)
    weights = hub.repos[MINILM].weight_bytes
    assert weight_bytes(hub, requests) >= weights
    total, digests = one_model, {first["artifact"]["digest"]}  # type: ignore[index]
    for i in range(1, COPIES):
        url = SPELLED if i % 2 else PLAIN
        result, requests = prepare(
            hub, registry, tmp_path / str(i), url, f"mount/{run}/model-{i}", first_repo
        )
        total += served(requests)
        digests.add(result["artifact"]["digest"])  # type: ignore[index]
        # Mounted: only the safetensors header probe (inspection) touches the weight file.
        assert weight_bytes(hub, requests) < 256 << 10, requests
    print(f"one model: {one_model} bytes from the Hub; {COPIES} models: {total} bytes")
    assert total <= 1.1 * one_model
    assert len(digests) == 1
    # Every copy is a whole artifact of its own repository, recording the canonical URL.
    last = manifest(registry, f"mount/{run}/model-{COPIES - 1}")
    assert last["annotations"]["org.opencontainers.image.source"] == PLAIN  # type: ignore[index]


def test_two_spellings_at_one_commit_give_one_digest_without_mounting(
    hub: HubEmulator, registry: Registry, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    plain, _ = prepare(hub, registry, tmp_path / "a", PLAIN, f"spell/{run}/a")
    spelled, requests = prepare(hub, registry, tmp_path / "b", SPELLED, f"spell/{run}/b")
    assert weight_bytes(hub, requests) >= hub.repos[MINILM].weight_bytes  # no hint: downloaded
    assert spelled["artifact"]["digest"] == plain["artifact"]["digest"]  # type: ignore[index]
