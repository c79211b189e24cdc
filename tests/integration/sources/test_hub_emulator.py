"""The Hub emulator against the real ``huggingface_hub`` client: if the library can list, pin and
download through it, the emulator speaks the Hub's protocol as the library expects it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.ground.hub import HubEmulator
from tests.ground.hub_repo import MINILM
from tests.integration.sources.conftest import GATED, GATED_TOKEN, PRIVATE

pytestmark = pytest.mark.integration


def test_model_info_and_tree_match_the_repository(hub: HubEmulator) -> None:
    repo = hub.repos[MINILM]
    api = HfApi(endpoint=hub.url, token=False)
    info = api.model_info(MINILM, revision="v1.0", files_metadata=True)
    assert (info.sha, info.pipeline_tag, info.tags) == (
        repo.commit,
        "sentence-similarity",
        list(repo.tags),
    )
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes == {path: entry.size for path, entry in repo.entries.items()}
    # Five entries per page: the library follows the Link header through every page.
    listed = {f.path for f in api.list_repo_tree(MINILM, revision=repo.commit, recursive=True)}
    assert listed == {*repo.entries, "1_Pooling"}
    assert sum(r.path.endswith(f"/tree/{repo.commit}") for r in hub.requests) > 1


def test_download_follows_the_cdn_redirect_and_verifies(hub: HubEmulator, tmp_path: Path) -> None:
    entry = hub.repos[MINILM].entries["model.safetensors"]
    url = hf_hub_url(MINILM, "model.safetensors", endpoint=hub.url)
    metadata = get_hf_file_metadata(url, token=False)
    assert (metadata.commit_hash, metadata.etag, metadata.size) == (
        hub.repos[MINILM].commit,
        entry.sha256,
        entry.size,
    )
    path = hf_hub_download(MINILM, "model.safetensors", endpoint=hub.url, cache_dir=tmp_path,
                           token=False)  # fmt: skip
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == entry.sha256
    config = hf_hub_download(MINILM, "config.json", endpoint=hub.url, cache_dir=tmp_path,
                             token=False)  # fmt: skip
    assert Path(config).read_bytes() == hub.repos[MINILM].entries["config.json"].source.read_bytes()


def test_the_library_raises_its_typed_errors(hub: HubEmulator, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(PRIVATE)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(MINILM, revision="no-such-branch")
    with pytest.raises(GatedRepoError):
        hf_hub_download(GATED, "config.json", endpoint=hub.url, cache_dir=tmp_path, token=False)
    granted = hf_hub_download(GATED, "config.json", endpoint=hub.url, cache_dir=tmp_path,
                              token=GATED_TOKEN)  # fmt: skip
    assert Path(granted).is_file()
