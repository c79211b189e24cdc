"""What the CLI sends: a file as it is, or a directory as a tar stream made on the fly.

The tar stream is deterministic — members sorted by name, the directory's own name as the one
top-level folder, mtime 0, uid/gid 0, empty user and group names, mode 0755 for directories and
executable files, 0644 for the rest, POSIX (pax) headers — so a re-run after a broken
connection produces the very same bytes and can resume where the gateway stopped. Its exact
size is known before the first byte is read (``Upload-Length``): the headers are built up front
(a few hundred bytes per member), the file contents are read only while streaming, and nothing
is written to disk. The bytes equal what ``tarfile`` writes for the same members.

Only regular files and directories are packed: a symlink, a FIFO, a socket or a device in the
directory is refused with its path (the preparation Job refuses links in archives too), as are
member names and member counts past the unpacker's bounds.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ai_models_cli.errors import PayloadChanged, UsageError
from api.upload import ACCEPTED_SUFFIXES, is_safe_filename, upload_format

READ_BLOCK = 1 << 20
MAX_MEMBERS = 10_000
"""The preparation Job's unpacker refuses an archive with more members (docs/upload.md)."""
MAX_MEMBER_NAME_BYTES = 1024
"""… or a member name longer than this."""
_END_OF_ARCHIVE = tarfile.NUL * (2 * tarfile.BLOCKSIZE)


class Payload(Protocol):
    """The bytes of one upload: ``blocks()`` yields exactly ``size`` bytes, the same each time."""

    @property
    def filename(self) -> str: ...

    @property
    def size(self) -> int: ...

    def blocks(self) -> Iterator[bytes]: ...


def _read_exactly(path: Path, size: int) -> Iterator[bytes]:
    """The file's ``size`` bytes; ``PayloadChanged`` when it is shorter or longer now."""
    left = size
    with path.open("rb") as handle:
        while left:
            block = handle.read(min(READ_BLOCK, left))
            if not block:
                raise PayloadChanged(f"{path} shrank while it was being sent; run again")
            left -= len(block)
            yield block
        if handle.read(1):
            raise PayloadChanged(f"{path} grew while it was being sent; run again")


@dataclass(frozen=True)
class FilePayload:
    path: Path
    filename: str
    size: int

    def blocks(self) -> Iterator[bytes]:
        return _read_exactly(self.path, self.size)


@dataclass(frozen=True)
class Member:
    """One tar member: its header (pax extension included) and, for a file, where its data is."""

    header: bytes
    path: Path | None
    size: int

    @property
    def padding(self) -> int:
        return -self.size % tarfile.BLOCKSIZE


@dataclass(frozen=True)
class TarPayload:
    filename: str
    members: tuple[Member, ...]

    @property
    def size(self) -> int:
        body = sum(len(m.header) + m.size + m.padding for m in self.members)
        body += len(_END_OF_ARCHIVE)
        return body + (-body % tarfile.RECORDSIZE)

    def blocks(self) -> Iterator[bytes]:
        written = 0
        for member in self.members:
            yield member.header
            if member.path is not None:
                yield from _read_exactly(member.path, member.size)
            if member.padding:
                yield tarfile.NUL * member.padding
            written += len(member.header) + member.size + member.padding
        written += len(_END_OF_ARCHIVE)
        yield _END_OF_ARCHIVE + tarfile.NUL * (-written % tarfile.RECORDSIZE)


def _header(name: str, where: Path, mode: int, size: int, directory: bool) -> bytes:
    if len(name.encode("utf-8", "surrogateescape")) > MAX_MEMBER_NAME_BYTES:
        raise UsageError(f"{where}: the path is longer than {MAX_MEMBER_NAME_BYTES} bytes")
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory or mode & 0o111 else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    try:
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")
    except UnicodeEncodeError:
        raise UsageError(f"{where}: the file name is not valid UTF-8; rename it") from None


def _walk(root: Path, directory: Path, name: str, members: list[Member]) -> None:
    """Depth first, entries sorted by name: the directory's member, then what it holds."""
    members.append(Member(_header(name, directory, 0o755, 0, True), None, 0))
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        path = Path(entry.path)
        member = f"{name}/{entry.name}"
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            raise UsageError(
                f"{path} is a symbolic link: links are not uploaded; copy the file it points to "
                "into the directory instead"
            )
        if stat.S_ISDIR(info.st_mode):
            _walk(root, path, member, members)
        elif stat.S_ISREG(info.st_mode):
            header = _header(member, path, info.st_mode, info.st_size, False)
            members.append(Member(header, path, info.st_size))
        else:
            raise UsageError(f"{path} is not a regular file or a directory; remove it")
        if len(members) > MAX_MEMBERS:
            raise UsageError(f"{root}: more than {MAX_MEMBERS} files and directories")


def tar_payload(directory: Path) -> TarPayload:
    """The directory as ``<name>.tar`` holding one top-level folder ``<name>/``."""
    name = Path(os.path.abspath(directory)).name or "model"
    members: list[Member] = []
    _walk(directory, directory, name, members)
    if not any(m.path is not None for m in members):
        raise UsageError(f"{directory} holds no files")
    filename = f"{name}.tar"
    if not is_safe_filename(filename):
        raise UsageError(f"{directory}: the directory's name cannot name an upload; rename it")
    return TarPayload(filename, tuple(members))


def open_payload(path: Path) -> Payload:
    """A directory → its tar stream; a file → itself (its suffix must name an accepted format)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file or directory") from None
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        return tar_payload(path)
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a regular file or a directory")
    if upload_format(path.name) is None or not is_safe_filename(path.name):
        raise UsageError(
            f"{path.name}: not an accepted upload; name a directory, or a file ending with one "
            f"of {', '.join(ACCEPTED_SUFFIXES)}"
        )
    return FilePayload(path, path.name, info.st_size)
