"""A model on the local disk as a ``Source``: a directory (selection rules apply) or one file.

Used by the worker on a laptop and for unpacked uploads. There is no revision and no sha256 in
the plan (``inspect`` reads headers only); the plan is marked ``local``, so publishing hashes
each file in one read pass before it sends, and an unchanged file is not sent again. Hidden
directories (``.git``, ``.cache``) are not walked: a git clone keeps a second copy of every LFS
weight there. A symbolic link must stay inside the model's directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from worker.errors import InvalidWeights, NoSupportedWeights, SourceNotFound
from worker.inspect.reader import ByteSource, FileByteSource
from worker.plan import PlannedFile, SourcePlan, WeightFormat
from worker.sources.selection import MAX_FILES, ListedFile, select_files
from worker.sources.spec import LocalSpec

SINGLE_FILE_FORMATS: dict[str, WeightFormat] = {".gguf": "GGUF", ".safetensors": "Safetensors"}


class LocalSource:
    def __init__(self, spec: LocalSpec) -> None:
        self._spec = spec
        self._root = spec.path if spec.path.is_dir() else spec.path.parent
        self._plan: SourcePlan | None = None

    def plan(self) -> SourcePlan:
        if self._plan is None:
            self._plan = self._resolve()
        return self._plan

    def byte_source(self, path: str) -> ByteSource:
        self._planned(path)
        return FileByteSource(self._root / path, name=path)

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        self._planned(path)
        with (self._root / path).open("rb") as handle:
            handle.seek(offset)
            while chunk := handle.read(chunk_size):
                yield chunk

    def _resolve(self) -> SourcePlan:
        path = self._spec.path
        if not path.exists():
            raise SourceNotFound(f"{path}: no such file or directory")
        if path.is_dir():
            selection = select_files(_walk(path), source=str(path))
            fmt, files, notes = selection.format, selection.files, selection.notes
            name = path.resolve().name
        else:
            fmt = _single_file_format(path)
            files = (PlannedFile(path=path.name, size=path.stat().st_size, role="weight"),)
            notes, name = (), path.stem
        return SourcePlan(
            url=self._spec.url,
            source_type=None,
            revision=None,
            name=name,
            format=fmt,
            files=files,
            notes=notes,
            local=True,
        )

    def _planned(self, path: str) -> PlannedFile:
        planned = self.plan().file(path)
        if planned is None:
            raise KeyError(f"{path} is not a file of the plan for {self._spec.url}")
        return planned


def _single_file_format(path: Path) -> WeightFormat:
    fmt = SINGLE_FILE_FORMATS.get(path.suffix.lower())
    if fmt is None or not path.is_file():
        raise NoSupportedWeights(f"{path}: a single file must be a .gguf or .safetensors file")
    return fmt


def _walk(root: Path) -> Iterator[ListedFile]:
    real_root = root.resolve()
    count = 0
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            full = Path(directory) / filename
            relative = full.relative_to(root).as_posix()
            if full.is_symlink() and not full.resolve().is_relative_to(real_root):
                raise InvalidWeights(f"{relative}: a link pointing out of the model directory")
            if not full.is_file():
                continue  # sockets, fifos, dangling links
            count += 1
            yield ListedFile(relative, full.stat().st_size)
            if count > MAX_FILES:
                return  # select_files reports the bound
