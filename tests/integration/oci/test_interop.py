"""Our artifacts read by the real peers: ``oras`` v1.3.0 and ``modctl`` (built by
``hack/build-peers.sh``), against the real registry and a real OCI layout.

The model is the real MiniLM prepared from a local directory, with a nested path
(``1_Pooling/config.json``) and two files whose content is the same as another's
(``1_Pooling/special_tokens_map.json``, ``1_Pooling/tokenizer.json``): each peer must write the
exact tree back, byte for byte, and the registry must have taken each distinct blob once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.ground.models import RealModels
from tests.ground.registry import Registry
from tests.integration.worker_cli_helpers import CountingProxy, run_worker, worker_env

pytestmark = pytest.mark.integration

COPIES = {"1_Pooling/special_tokens_map.json": "special_tokens_map.json",
          "1_Pooling/tokenizer.json": "tokenizer.json"}  # fmt: skip
"""Files added to MiniLM's tree: copy → original (same bytes, so the same digest)."""
DROPPED = (".gitattributes", "data_config.json")
"""MiniLM files the selection leaves out (neither config, weights nor docs): not in the artifact."""


def _tree(root: Path) -> dict[str, str]:
    """Every regular file under ``root``: relative path → sha256."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@dataclass(frozen=True)
class Pushed:
    model: Path
    expected: dict[str, str]
    """What a faithful pull writes: path → sha256."""
    repository: str
    digest: str
    finished_uploads: list[str]
    """The digest of every upload the registry completed (PUT ?digest=) during the push."""


@pytest.fixture(scope="module")
def model(real_models: RealModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("interop") / "minilm"
    shutil.copytree(real_models.minilm_dir, root)
    for copy, original in COPIES.items():
        shutil.copyfile(root / original, root / copy)
    return root


def _expected(model: Path) -> dict[str, str]:
    return {path: sha for path, sha in _tree(model).items() if path not in DROPPED}


@pytest.fixture(scope="module")
def pushed(model: Path, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    home = tmp_path_factory.mktemp("interop-home")
    repository = f"interop/minilm-{uuid.uuid4().hex[:8]}"
    proxy = CountingProxy(registry.host)
    try:
        run = run_worker(
            ["prepare", str(model), "--to", f"{proxy.host}/{repository}:v1"],
            worker_env(home, AI_MODELS_REGISTRY_INSECURE="true"),
            wrapper=["env", "-C", str(home)],
        )
        digest = str(run.result()["artifact"]["digest"])
    finally:
        proxy.close()
    finished = [
        parse_qs(urlsplit(e.path).query)["digest"][0]
        for e in proxy.exchanges
        if e.method == "PUT" and "/blobs/uploads/" in e.path and e.status == 201
    ]
    return Pushed(model, _expected(model), repository, digest, finished)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )  # fmt: skip
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


def test_identical_files_are_uploaded_once(pushed: Pushed, registry: Registry) -> None:
    distinct = set(pushed.expected.values())
    assert len(distinct) == len(pushed.expected) - len(COPIES)
    layers = sorted(f for f in pushed.finished_uploads if f.removeprefix("sha256:") in distinct)
    assert layers == sorted(f"sha256:{sha}" for sha in distinct)
    assert len(pushed.finished_uploads) == len(distinct) + 1  # and the config blob


def test_oras_pull_writes_the_exact_tree(
    pushed: Pushed, registry: Registry, peer_bin: Path, tmp_path: Path
) -> None:
    """oras names a pulled file only by the layer's org.opencontainers.image.title; without it,
    it wrote no file at all ("Skipped pulling layers without file name")."""
    reference = f"{registry.host}/{pushed.repository}@{pushed.digest}"
    _run([str(peer_bin / "oras"), "pull", "--plain-http", reference, "-o", "out"], tmp_path)
    assert _tree(tmp_path / "out") == pushed.expected


def test_modctl_pull_and_extract_write_the_exact_tree(
    pushed: Pushed, registry: Registry, peer_bin: Path, tmp_path: Path
) -> None:
    modctl = [str(peer_bin / "modctl"), "--storage-dir", str(tmp_path / "storage")]
    reference = f"{registry.host}/{pushed.repository}:v1"
    _run([*modctl, "pull", "--plain-http", reference], tmp_path)
    _run([*modctl, "extract", reference, "--output", str(tmp_path / "out")], tmp_path)
    assert _tree(tmp_path / "out") == pushed.expected


@pytest.fixture
def prepare_into(model: Path, tmp_path: Path) -> Callable[[str], str]:
    """Runs ``prepare <model> --to DEST`` with ``tmp_path`` as the current directory."""

    def prepare(dest: str) -> str:
        run = run_worker(
            ["prepare", str(model), "--to", dest],
            worker_env(tmp_path),
            wrapper=["env", "-C", str(tmp_path)],
        )
        return str(run.result()["artifact"]["digest"])

    return prepare


def test_a_layout_dest_with_a_tag_is_listed_by_oras_and_pulled_by_tag(
    pushed: Pushed, prepare_into: Callable[[str], str], peer_bin: Path, tmp_path: Path
) -> None:
    """``--to ./dir:tag`` used to create a directory named ``dir:tag`` with an untagged index."""
    digest = prepare_into("./layout:v1")
    assert digest == pushed.digest  # the same artifact, wherever it goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"]
    oras = str(peer_bin / "oras")
    tags = _run([oras, "repo", "tags", "--oci-layout", "layout"], tmp_path)
    assert tags.stdout == "v1\n"
    _run([oras, "pull", "--oci-layout", "layout:v1", "-o", "out"], tmp_path)
    assert _tree(tmp_path / "out") == pushed.expected


def test_skopeo_copies_a_tagged_layout_dest_by_its_tag(
    pushed: Pushed, prepare_into: Callable[[str], str], tmp_path: Path
) -> None:
    """skopeo (installed by hack/test.sh from Debian) finds an ``oci:DIR:TAG`` by the index's
    org.opencontainers.image.ref.name, and copies the artifact without changing its digest."""
    skopeo = shutil.which("skopeo")
    assert skopeo is not None, "skopeo is missing: hack/test.sh installs it (apt-get)"
    assert prepare_into("./layout:v1") == pushed.digest
    _run([skopeo, "copy", "oci:layout:v1", "oci:copy:v2"], tmp_path)
    copied = _run([skopeo, "inspect", "--raw", "oci:copy:v2"], tmp_path)
    assert f"sha256:{hashlib.sha256(copied.stdout.encode()).hexdigest()}" == pushed.digest


def test_a_layout_dest_without_a_tag_is_tagged_latest(
    pushed: Pushed, prepare_into: Callable[[str], str], peer_bin: Path, tmp_path: Path
) -> None:
    assert prepare_into("models/minilm") == pushed.digest  # a relative path without ./
    index = json.loads((tmp_path / "models/minilm/index.json").read_text())
    assert [m["annotations"] for m in index["manifests"]] == [
        {"org.opencontainers.image.ref.name": "latest"}
    ]
    tags = _run([str(peer_bin / "oras"), "repo", "tags", "--oci-layout", "models/minilm"], tmp_path)
    assert tags.stdout == "latest\n"
