"""A ``Source`` whose files are bytes in memory; its plan comes from the real selection rules
(or, with ``fmt``, every file is a weight of that format)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from worker.inspect.reader import ByteSource, BytesSource
from worker.plan import PlannedFile, SourcePlan, WeightFormat
from worker.sources.selection import select_files


class MemorySource:
    def __init__(
        self,
        files: Mapping[str, bytes],
        *,
        source_type: str | None = "HuggingFace",
        tasks: tuple[str, ...] = (),
        features: tuple[str, ...] = (),
        fmt: WeightFormat | None = None,
    ) -> None:
        self.files = dict(files)
        selection = select_files([(path, len(data)) for path, data in files.items()])
        self._plan = SourcePlan(
            url="memory://model",
            source_type=source_type,  # type: ignore[arg-type]
            revision="r" * 40 if source_type else None,
            name="model",
            format=fmt or selection.format,
            files=selection.files
            if fmt is None
            else tuple(PlannedFile(p, len(d), "weight") for p, d in files.items()),
            provider_tasks=tasks,
            provider_features=features,
        )

    def plan(self) -> SourcePlan:
        return self._plan

    def byte_source(self, path: str) -> ByteSource:
        return BytesSource(path, self.files[path])

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        yield self.files[path][offset:]
