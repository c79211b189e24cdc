"""A Hugging Face model repository as a ``Source``: pinned to one commit, files chosen by rule.

``plan()`` asks the Hub once for the revision's commit sha and once (paged) for the tree at that
sha, then applies ``selection``; every later read names the sha, never the branch, so a push to
the branch while we work cannot mix two versions. Files are read by range for inspection and
streamed for the transfer, all through ``HubClient``.
"""

from __future__ import annotations

from collections.abc import Iterator

from worker.inspect.reader import ByteSource
from worker.plan import PlannedFile, SourcePlan
from worker.sources.hub_client import HubClient, HubRevision
from worker.sources.ranged import RangedByteSource
from worker.sources.selection import MAX_FILES, ListedFile, select_files
from worker.sources.spec import HuggingFaceSpec


class HuggingFaceSource:
    def __init__(self, spec: HuggingFaceSpec, client: HubClient) -> None:
        self._spec = spec
        self._client = client
        self._plan: SourcePlan | None = None

    @property
    def spec(self) -> HuggingFaceSpec:
        return self._spec

    def plan(self) -> SourcePlan:
        if self._plan is None:
            self._plan = self._resolve()
        return self._plan

    def byte_source(self, path: str) -> ByteSource:
        planned = self._planned(path)
        commit, repo_id = self._commit(), self._spec.repo_id

        def fetch(offset: int, length: int) -> bytes:
            return self._client.read_range(repo_id, commit, path, offset, length)

        return RangedByteSource(path, planned.size, fetch)

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        planned = self._planned(path)
        if offset >= planned.size:
            return iter(())  # nothing left; a range past the end would be a 416
        return self._client.stream(self._spec.repo_id, self._commit(), path, offset, chunk_size)

    def _resolve(self) -> SourcePlan:
        spec = self._spec
        revision = self._client.revision(spec.repo_id, spec.revision)
        listing = self._client.list_files(spec.repo_id, revision.commit, MAX_FILES)
        selection = select_files(
            (ListedFile(f.path, f.size, f.sha256) for f in listing),
            gguf_file=spec.gguf_file,
            source=spec.repo_id,
        )
        return SourcePlan(
            url=spec.url,
            canonical_url=spec.canonical_url,
            source_type="HuggingFace",
            revision=revision.commit,
            name=spec.repo_id,
            format=selection.format,
            files=selection.files,
            notes=(*_revision_notes(spec, revision), *selection.notes),
            provider_tasks=(revision.pipeline_tag,) if revision.pipeline_tag else (),
            provider_features=revision.tags,
        )

    def _commit(self) -> str:
        revision = self.plan().revision
        assert revision is not None  # a Hub plan always pins a commit
        return revision

    def _planned(self, path: str) -> PlannedFile:
        planned = self.plan().file(path)
        if planned is None:
            raise KeyError(f"{path} is not a file of the plan for {self._spec.url}")
        return planned


def _revision_notes(spec: HuggingFaceSpec, revision: HubRevision) -> list[str]:
    asked = spec.revision or "the default branch"
    if spec.revision == revision.commit:
        return []
    return [f"pinned {asked} of {spec.repo_id} to commit {revision.commit}"]
