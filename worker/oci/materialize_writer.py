"""Writes the layers of one digest into the directory: fetch once, verify, place everywhere.

Layers with the same digest (two LICENSE copies, ``tokenizer/`` and ``tokenizer_2/``) are one
unit of work: the blob streams once into ``.ai-models-partial/<hex>`` while being hashed, then
each raw layer gets a hard link of it (a copy where links are refused) renamed into place, and
each tar layer is unpacked from it. So no two threads ever share a partial file.

A partial left by an earlier attempt is resumed; if the bytes then do not hash to the digest,
the old part may be what is damaged, so it is discarded and the blob fetched once more from
zero — only freshly fetched bytes that mismatch are the artifact's fault (``InvalidWeights``,
"republish"). Every path goes through ``SafeDirectory``: no link or special file is followed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from oci.digest import hex_of
from worker.errors import InvalidWeights
from worker.oci.content import DigestMismatch
from worker.oci.manifest_reader import ArtifactLayer, check_relative_path
from worker.oci.materialize_state import StateJournal
from worker.oci.safe_fs import SafeDirectory
from worker.oci.tar_layer import Compression, TarReader, decompressed, expansion_budget

PARTIAL_DIR = ".ai-models-partial"
BLOB_PIECE_BYTES = 256 << 10
"""Bytes per piece of a blob download or a file read: each piece is received, hashed and
written while it is still in the CPU's L2 cache (with 8 MiB pieces every copy ran at memory
speed: 2-4x the system CPU; docs/performance.md)."""


class ArtifactOrigin(Protocol):
    def manifest(self, digest: str) -> bytes: ...

    def blob_chunks(self, digest: str, offset: int) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class MaterializedFile:
    path: str
    digest: str
    size: int
    skipped: bool
    """True when the file was already complete and verified."""


def _split(path: str) -> tuple[str, str]:
    parent, _, leaf = path.rpartition("/")
    return parent, leaf


class DirectoryWriter:
    def __init__(
        self,
        root: SafeDirectory,
        origin: ArtifactOrigin,
        ref: str,
        journal: StateJournal,
        on_file: Callable[[MaterializedFile], None],
    ) -> None:
        self._root = root
        self._origin = origin
        self._ref = ref
        self._journal = journal
        self._on_file = on_file

    def write(self, layers: list[ArtifactLayer]) -> list[MaterializedFile]:
        """Writes ``layers`` (all of one digest); returns one result per layer."""
        done = [MaterializedFile(x.path, x.digest, x.size, True) for x in layers if self._ok(x)]
        missing = [x for x in layers if x.path not in {d.path for d in done}]
        if missing:
            done += self._fetch_and_place(missing)
        for result in done:
            self._on_file(result)
        return done

    # ---- already complete? -------------------------------------------------------------------

    def _stat(self, path: str) -> tuple[int, int] | None:
        parent, leaf = _split(path)
        with self._root.directory(parent) as fd:
            found = self._root.lstat(fd, leaf, path)
        return None if found is None else (found.st_size, found.st_mtime_ns)

    def _ok(self, layer: ArtifactLayer) -> bool:
        if layer.archive != "raw":
            record = self._journal.records.get(layer.path)
            if record is None or record.digest != layer.digest:
                return False
            return all(self._stat(name) == stats for name, stats in record.files.items())
        stats = self._stat(layer.path)
        if stats is None or stats[0] != layer.size:
            return False
        if self._journal.is_current(layer.path, layer.digest, {layer.path: stats}):
            return True
        parent, leaf = _split(layer.path)
        hasher = hashlib.sha256()
        with self._root.directory(parent) as dir_fd:
            fd = self._root.open_file(dir_fd, leaf, layer.path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as file:
                while piece := file.read(BLOB_PIECE_BYTES):
                    hasher.update(piece)
        if "sha256:" + hasher.hexdigest() != layer.digest:
            return False
        self._journal.record(layer.path, layer.digest, {layer.path: stats})
        return True

    # ---- fetch once, place everywhere --------------------------------------------------------

    def _fetch_and_place(self, layers: list[ArtifactLayer]) -> list[MaterializedFile]:
        first = layers[0]
        name = hex_of(first.digest)
        relative = f"{PARTIAL_DIR}/{name}"
        with self._root.directory(PARTIAL_DIR) as partial_dir:
            found = self._root.lstat(partial_dir, name, relative)
            if found is not None and found.st_nlink > 1:
                # Linked to a placed file by an attempt killed before it removed the partial:
                # writing into it would change that file. Start from a new inode.
                self._root.remove(partial_dir, name)
            flags = os.O_RDWR | os.O_CREAT
            blob = os.fdopen(self._root.open_file(partial_dir, name, relative, flags), "r+b")
            try:
                with blob:
                    self._download(blob, first)
                    os.fchmod(blob.fileno(), 0o644)
                    for index, layer in enumerate(layers):
                        temporary = f"{name}.{index}"
                        try:
                            if layer.archive == "raw":
                                self._place_copy(partial_dir, name, blob, temporary, layer)
                            else:
                                self._unpack(partial_dir, blob, temporary, layer)
                        except BaseException:
                            self._root.remove(partial_dir, temporary)
                            raise
            except InvalidWeights:
                self._root.remove(partial_dir, name)  # a wrong blob is worth nothing
                raise
            self._root.remove(partial_dir, name)
        return [MaterializedFile(x.path, x.digest, x.size, False) for x in layers]

    def _download(self, file: BinaryIO, layer: ArtifactLayer) -> None:
        size = os.fstat(file.fileno()).st_size
        hasher = hashlib.sha256()
        offset = _rehash(file, hasher) if 0 < size <= layer.size else 0
        try:
            self._append(file, layer, offset, hasher)
        except DigestMismatch as mismatch:
            if offset == 0:  # fresh bytes: the artifact's fault
                raise self._corrupt(layer, mismatch) from None
            # The part kept from an earlier attempt may be what is damaged: start over once.
            try:
                self._append(file, layer, 0, hashlib.sha256())
            except DigestMismatch as again:
                raise self._corrupt(layer, again) from None

    def _append(self, file: BinaryIO, layer: ArtifactLayer, offset: int, hasher: _Hasher) -> None:
        file.seek(offset)
        file.truncate(offset)
        for piece in self._origin.blob_chunks(layer.digest, offset):
            offset += len(piece)
            if offset > layer.size:
                file.truncate(0)
                raise DigestMismatch(str(layer.size), f"more than {layer.size} bytes", "size")
            hasher.update(piece)
            file.write(piece)
        file.flush()  # made durable in batches by the journal (syncfs), not one fsync per file
        if offset != layer.size:
            raise DigestMismatch(str(layer.size), str(offset), "size")
        actual = "sha256:" + hasher.hexdigest()
        if actual != layer.digest:
            file.truncate(0)
            raise DigestMismatch(layer.digest, actual, "sha256")

    def _corrupt(self, layer: ArtifactLayer, mismatch: DigestMismatch) -> InvalidWeights:
        return InvalidWeights(
            f"{layer.path}: blob {layer.digest} from {self._ref} has {mismatch.what} "
            f"{mismatch.actual}, the manifest says {mismatch.expected}: the stored copy is "
            "corrupt; republish the model"
        )

    def _place_copy(
        self, partial_dir: int, name: str, blob: BinaryIO, temporary: str, layer: ArtifactLayer
    ) -> None:
        try:
            os.link(name, temporary, src_dir_fd=partial_dir, dst_dir_fd=partial_dir,
                    follow_symlinks=False)  # fmt: skip
        except FileExistsError:  # a leftover of a killed attempt: ours to replace
            self._root.remove(partial_dir, temporary)
            self._place_copy(partial_dir, name, blob, temporary, layer)
            return
        except OSError:  # a file system without hard links (or at their limit): a copy
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            fd = self._root.open_file(partial_dir, temporary, temporary, flags)
            with os.fdopen(fd, "wb") as copy:
                blob.seek(0)
                while piece := blob.read(BLOB_PIECE_BYTES):
                    copy.write(piece)
                os.fchmod(copy.fileno(), 0o644)
        stats = self._install(partial_dir, temporary, layer.path)
        self._journal.record(layer.path, layer.digest, {layer.path: stats})

    def _install(self, partial_dir: int, temporary: str, path: str) -> tuple[int, int]:
        parent, leaf = _split(path)
        with self._root.directory(parent) as dir_fd:
            placed = self._root.place(partial_dir, temporary, dir_fd, leaf, path)
        return placed.st_size, placed.st_mtime_ns

    def _unpack(
        self, partial_dir: int, blob: BinaryIO, temporary: str, layer: ArtifactLayer
    ) -> None:
        where = f"{self._ref}: layer {layer.path} ({layer.digest})"
        compression: Compression = "gzip" if layer.archive == "gzip" else ""
        compression = "zstd" if layer.archive == "zstd" else compression
        blob.seek(0)
        stream = decompressed(blob, compression)
        reader = TarReader(stream, expansion_budget(layer.size, compression), where)
        files: dict[str, tuple[int, int]] = {}
        seen: set[str] = set()
        for entry in reader.entries():
            path = _member_path(entry.name, layer.path, where)
            if path in seen:
                raise InvalidWeights(f"{where}: member {entry.name!r} appears twice")
            if path is None:  # the archive's root directory entry
                for _ in reader.data():
                    pass
                continue
            seen.add(path)
            if entry.kind == "dir":
                with self._root.directory(path):
                    continue
            self._root.remove(partial_dir, temporary)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            fd = self._root.open_file(partial_dir, temporary, temporary, flags)
            with os.fdopen(fd, "wb") as out:
                for piece in reader.data():
                    out.write(piece)
                os.fchmod(out.fileno(), 0o644)
            files[path] = self._install(partial_dir, temporary, path)
        self._journal.record(layer.path, layer.digest, files)


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _rehash(file: BinaryIO, hasher: _Hasher) -> int:
    file.seek(0)
    offset = 0
    while piece := file.read(BLOB_PIECE_BYTES):
        hasher.update(piece)
        offset += len(piece)
    return offset


def _member_path(name: str, layer_path: str, where: str) -> str | None:
    """A tar member's path in the directory; ``None`` for the archive's own root (``./``)."""
    trimmed = name.removeprefix("./").removesuffix("/")
    if trimmed in ("", "."):
        return None
    path = check_relative_path(trimmed, f"{where}: member")
    if path != layer_path and not path.startswith(layer_path + "/"):
        raise InvalidWeights(
            f"{where}: member {name!r} lies outside the layer's path {layer_path!r}; refusing "
            "to unpack it"
        )
    return path
