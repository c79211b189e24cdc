"""Unpacks an uploaded archive (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.zst``, ``.zip``) into a
directory of the workspace: bounded, streaming, and written so that nothing in it can redirect a
write.

The archive is untrusted input. A tar streams from the registry and is unpacked as it arrives
(``archive_streams``: counted, hashed, decompressed); a zip needs random access and is read from
a spooled copy (``archive_zip``). Every member passes ``Members.admit`` before a byte of it is
written, and every byte passes ``Budget.spend`` before it is written (of a tar, every byte out of
the decompressor, headers and padding too: a stream of headers alone must not run forever), so a
bomb stops while it unpacks, never after. Refused, with ``UploadRejected`` naming the archive and
the member:

- a name that is absolute, has a ``..``, ``.`` or empty component or a backslash, has control
  characters, is longer than 1024 bytes (a component: 255) or nests deeper than 32 directories;
- a name seen twice (a tar's repeat, a zip's central directory duplicate), a file where a
  directory is or below a file;
- any symlink or hardlink (all links: the simplest rule that is safe), a device, a FIFO, any
  other non-regular type; more than 10,000 members;
- more than ``max_expanded_bytes`` of output, or more than 200 bytes of output per byte of
  input read once the first 64 MiB are out;
- a truncated gzip or zstd stream, a tar without its end-of-archive marker; zip entries that are
  encrypted or use a compression other than stored/deflate, or whose data does not match the
  sizes their headers declare.

Files are created through directory descriptors (``worker.oci.safe_fs``: ``O_NOFOLLOW``,
``O_EXCL``, mode 0644), in a directory the unpacker creates. The model is then the one
top-level folder when the archive has exactly that, else the directory itself.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import zstandard

from worker.archive_streams import RawStream, TarKind, decompressing
from worker.errors import UploadRejected
from worker.oci.safe_fs import SafeDirectory, open_root
from worker.oci.tar_layer import Readable, TarReader

ArchiveKind = Literal["tar", "tar.gz", "tar.zst", "zip"]
MAX_MEMBERS = 10_000
MAX_NAME_BYTES = 1024
MAX_DEPTH = 32
MAX_COMPONENT_BYTES = 255
"""Linux's NAME_MAX: a longer component could not be created anyway."""
MAX_RATIO = 200
RATIO_GRACE_BYTES = 64 << 20
DEFAULT_MAX_EXPANDED_BYTES = 1 << 40
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRAIN_PIECE = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    max_expanded_bytes: int = DEFAULT_MAX_EXPANDED_BYTES
    """All members' bytes together (``AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES``)."""
    max_members: int = MAX_MEMBERS
    max_name_bytes: int = MAX_NAME_BYTES
    max_depth: int = MAX_DEPTH
    max_ratio: int = MAX_RATIO
    """Output bytes per input byte read, checked once ``ratio_grace_bytes`` are out."""
    ratio_grace_bytes: int = RATIO_GRACE_BYTES


@dataclass(frozen=True)
class Unpacked:
    root: Path
    """The model's directory: the archive's one top-level folder, or the destination."""
    files: int
    bytes: int


def reject(archive: str, problem: str) -> UploadRejected:
    return UploadRejected(f"{archive}: {problem}; refusing to unpack it")


@dataclass
class Members:
    """The name rules, and the tree the admitted names build (duplicates, conflicts, top level)."""

    archive: str
    limits: ArchiveLimits
    count: int = 0
    files: set[str] = field(default_factory=set)
    directories: set[str] = field(default_factory=set)
    named: set[str] = field(default_factory=set)
    top: set[str] = field(default_factory=set)
    root_files: bool = False

    def admit(self, name: str, is_dir: bool) -> str | None:
        """The member's path relative to the destination; None for the archive's own root."""
        self.count += 1
        if self.count > self.limits.max_members:
            raise reject(self.archive, f"more than {self.limits.max_members:,} members")
        path = self._path(name, is_dir)
        if path is None:
            return None
        parts = path.split("/")
        if len(parts) > self.limits.max_depth:
            raise self._bad(name, f"nests {len(parts)} deep, over {self.limits.max_depth}")
        self._place(name, path, parts, is_dir)
        return path

    def _bad(self, name: str, problem: str) -> UploadRejected:
        return reject(self.archive, f"member {name[:200]!r} {problem}")

    def _path(self, name: str, is_dir: bool) -> str | None:
        size = len(name.encode("utf-8", "surrogateescape"))
        if size > self.limits.max_name_bytes:
            raise self._bad(
                name, f"has a name of {size:,} bytes, over {self.limits.max_name_bytes}"
            )
        if _CONTROL.search(name):
            raise self._bad(name, "has control characters in its name")
        if name.startswith("/"):
            raise self._bad(name, "is an absolute path")
        if "\\" in name:
            raise self._bad(name, "has a backslash in its name")
        path = name
        while path.startswith("./"):
            path = path[2:]
        path = path.rstrip("/") if is_dir else path
        if path in ("", "."):
            if not is_dir:
                raise self._bad(name, "is a file without a name")
            return None
        parts = path.split("/")
        if ".." in parts:
            raise self._bad(name, "has a '..' component")
        if "" in parts or "." in parts:
            raise self._bad(name, "is not a plain relative path")
        if any(
            len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES for part in parts
        ):
            raise self._bad(name, f"has a path component over {MAX_COMPONENT_BYTES} bytes")
        return path

    def _place(self, name: str, path: str, parts: list[str], is_dir: bool) -> None:
        if path in self.named:
            raise self._bad(name, "appears twice")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in self.files:
                raise self._bad(name, f"lies below the file {parent!r}")
            self.directories.add(parent)
        if not is_dir and path in self.directories:
            raise self._bad(name, "is a file where the archive has a directory")
        if is_dir and path in self.files:
            raise self._bad(name, "is a directory where the archive has a file")
        self.named.add(path)
        (self.directories if is_dir else self.files).add(path)
        self.top.add(parts[0])
        self.root_files = self.root_files or (len(parts) == 1 and not is_dir)

    def model_root(self, dest: Path) -> Path:
        """The one top-level folder when there is exactly that, else ``dest``."""
        if len(self.top) == 1 and not self.root_files:
            return dest / next(iter(self.top))
        return dest


class Consumed(Protocol):
    @property
    def consumed(self) -> int:
        """Input bytes read so far."""
        ...


class Budget:
    """Counts the output as it is written: the expanded-size limit and the expansion ratio."""

    def __init__(self, archive: str, limits: ArchiveLimits, raw: Consumed) -> None:
        self._archive = archive
        self._limits = limits
        self._raw = raw
        self.written = 0

    def spend(self, nbytes: int) -> None:
        """Called before ``nbytes`` are written; refuses them when they break a bound."""
        total = self.written + nbytes
        limits = self._limits
        if total > limits.max_expanded_bytes:
            raise reject(
                self._archive,
                f"it expands to more than {limits.max_expanded_bytes:,} bytes (the limit)",
            )
        consumed = max(1, self._raw.consumed)
        if total > limits.ratio_grace_bytes and total > limits.max_ratio * consumed:
            raise reject(
                self._archive,
                f"{total:,} bytes came out of {consumed:,} compressed bytes, more than "
                f"{limits.max_ratio}:1 (a decompression bomb?)",
            )
        self.written = total


class TreeWriter:
    """Creates the admitted members under ``dest`` (created here; it must not exist or be empty)."""

    def __init__(self, dest: Path, budget: Budget | None) -> None:
        """``budget``: spent on each piece before it is written; None when the input is
        metered already (``Metered``)."""
        self._root = SafeDirectory(open_root(str(dest)), str(dest))
        self._budget = budget
        self.files = 0
        self.bytes = 0

    def close(self) -> None:
        self._root.close()

    def directory(self, path: str) -> None:
        with self._root.directory(path):
            pass

    def file(self, path: str, pieces: Iterable[bytes]) -> int:
        """Writes a new file from ``pieces``; returns its size."""
        parent, _, leaf = path.rpartition("/")
        size = 0
        with self._root.directory(parent) as dir_fd:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            with os.fdopen(self._root.open_file(dir_fd, leaf, path, flags), "wb") as out:
                for piece in pieces:
                    if self._budget is not None:
                        self._budget.spend(len(piece))
                    out.write(piece)
                    size += len(piece)
                os.fchmod(out.fileno(), 0o644)
        self.files += 1
        self.bytes += size
        return size


class Metered:
    """The decompressed tar stream, every byte spent from the budget as it comes out."""

    def __init__(self, stream: Readable, budget: Budget) -> None:
        self._stream = stream
        self._budget = budget

    def read(self, size: int = -1, /) -> bytes:
        piece = self._stream.read(size)
        self._budget.spend(len(piece))
        return piece


def unpack_tar(
    raw: RawStream, kind: TarKind, dest: Path, archive: str, limits: ArchiveLimits
) -> Unpacked:
    """Unpacks the tar in ``raw`` as it streams; reads ``raw`` to its end (the caller then
    verifies its digest with ``raw.finish()``)."""
    budget = Budget(archive, limits, raw)
    stream = Metered(decompressing(raw, kind), budget)
    members = Members(archive, limits)
    writer = TreeWriter(dest, None)
    try:
        try:
            _tar_members(stream, members, writer, archive, limits)
            if kind != "tar":
                _drain(stream, archive)
        except UploadRejected as error:
            if raw.frames is not None and raw.at_end and not raw.frames.complete:
                raise reject(archive, "the zstd stream is truncated") from error
            raise
        if raw.frames is not None and not raw.frames.complete:
            raise reject(archive, "the zstd stream is truncated")
    finally:
        writer.close()
    return Unpacked(members.model_root(dest), writer.files, writer.bytes)


def _tar_members(
    stream: Readable, members: Members, writer: TreeWriter, archive: str, limits: ArchiveLimits
) -> None:
    reader = TarReader(
        stream, limits.max_expanded_bytes, archive, error=UploadRejected, what="archive"
    )
    for entry in reader.entries():
        path = members.admit(entry.name, entry.kind == "dir")
        if path is None or entry.kind == "dir":
            for _ in reader.data():
                pass
            if path is not None:
                writer.directory(path)
            continue
        writer.file(path, reader.data())
    if not reader.ended:
        raise reject(archive, "the tar stream ends without its end-of-archive marker (truncated?)")


def _drain(stream: Readable, archive: str) -> None:
    """Reads the decompressed stream to its end: the padding after the end-of-archive marker
    counts like output, and only the end shows a gzip stream's truncation or damaged trailer."""
    while True:
        try:
            piece = stream.read(_DRAIN_PIECE)
        except EOFError:
            raise reject(archive, "the gzip stream is truncated") from None
        except (OSError, ValueError, zlib.error, zstandard.ZstdError) as error:
            raise reject(archive, f"the archive does not decompress ({error})") from None
        if not piece:
            return
