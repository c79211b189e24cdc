"""A ``Source`` whose files are bytes in memory; its plan comes from the real selection rules."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from worker.inspect.reader import ByteSource, BytesSource
from worker.plan import SourcePlan
from worker.sources.selection import select_files


class MemorySource:
    def __init__(
        self,
        files: Mapping[str, bytes],
        *,
        tasks: tuple[str, ...] = (),
        features: tuple[str, ...] = (),
    ) -> None:
        self.files = dict(files)
        selection = select_files([(path, len(data)) for path, data in files.items()])
        self._plan = SourcePlan(
            url="memory://model",
            source_type="HuggingFace",
            revision="r" * 40,
            name="model",
            format=selection.format,
            files=selection.files,
            provider_tasks=tasks,
            provider_features=features,
        )

    def plan(self) -> SourcePlan:
        return self._plan

    def byte_source(self, path: str) -> ByteSource:
        return BytesSource(path, self.files[path])

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        yield self.files[path][offset:]
