"""The zip side of the upload unpacker: a spooled ``.zip`` read with ``zipfile``, bounded first.

A zip is read from its end (the central directory), so it is spooled into the workspace first.
``zipfile`` parses the whole central directory into objects before anyone can count them, so
the end-of-central-directory record (zip64 too) is read here first: more entries than allowed,
or a central directory larger than that many entries can fill, is refused before ``zipfile``
sees the file. Then every entry is checked (name rules of ``archive.Members``, no encryption,
stored or deflate only, no link or special file in the Unix mode) before anything is written,
and each is written counting the actual bytes: a size in a (zip64) header that lies against the
data is refused, and the expansion ratio is measured against the bytes ``zipfile`` has read from
the file so far, so a bomb stops while it unpacks.
"""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from worker.archive import ArchiveLimits, Budget, Members, TreeWriter, Unpacked, reject
from worker.errors import UploadRejected

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20
_ZIP64_EOCD = b"PK\x06\x06"
_ZIP64_EOCD_SIZE = 56
_MAX_COMMENT = 0xFFFF
_ENTRY_OVERHEAD = 46 + 256
"""A central directory entry's fixed part plus room for its extra fields, beside its name."""
_SUPPORTED = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_PIECE = 256 << 10
_ZIP_ERRORS = (
    zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError,
    struct.error,
)  # fmt: skip
_LINK_OR_SPECIAL = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class CountingFile:
    """The spooled file for ``zipfile``, counting the bytes read from it (the ratio's input)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self.consumed += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True


def unpack_zip(spooled: Path, dest: Path, archive: str, limits: ArchiveLimits) -> Unpacked:
    """Unpacks the zip file ``spooled`` into ``dest``."""
    with spooled.open("rb") as file:
        check_central_directory(file, archive, limits)
        counting = CountingFile(file)
        members = Members(archive, limits)
        budget = Budget(archive, limits, counting)
        writer = TreeWriter(dest, budget)
        try:
            with zipfile.ZipFile(cast(Any, counting)) as opened:  # it seeks, tells and reads
                _unpack_entries(opened, members, writer, archive, limits)
        except _ZIP_ERRORS as error:
            raise reject(archive, f"not a readable zip ({error})") from None
        finally:
            writer.close()
    return Unpacked(members.model_root(dest), writer.files, writer.bytes)


def _unpack_entries(
    opened: zipfile.ZipFile,
    members: Members,
    writer: TreeWriter,
    archive: str,
    limits: ArchiveLimits,
) -> None:
    entries = opened.infolist()
    if len(entries) > limits.max_members:
        raise reject(archive, f"more than {limits.max_members:,} members")
    declared = sum(entry.file_size for entry in entries)
    if declared > limits.max_expanded_bytes:
        raise reject(
            archive,
            f"its entries declare {declared:,} bytes, more than the limit of "
            f"{limits.max_expanded_bytes:,}",
        )
    planned = [(entry, *_admit(entry, members, archive)) for entry in entries]
    for entry, path, is_dir in planned:
        if path is None:
            continue
        if is_dir:
            writer.directory(path)
            continue
        with opened.open(entry) as member:
            written = writer.file(path, _pieces(member))
        if written != entry.file_size:
            raise reject(
                archive,
                f"member {entry.orig_filename!r} holds {written:,} bytes, its header says "
                f"{entry.file_size:,}",
            )


def _admit(entry: zipfile.ZipInfo, members: Members, archive: str) -> tuple[str | None, bool]:
    """The entry's path (None: the root) and whether it is a directory, once it passed."""
    name = entry.orig_filename  # as stored: ZipInfo.filename is cut at a NUL byte
    if entry.flag_bits & 0x1:
        raise reject(archive, f"member {name!r} is encrypted")
    if entry.compress_type not in _SUPPORTED:
        raise reject(
            archive,
            f"member {name!r} uses compression method {entry.compress_type} (only stored and "
            "deflate are supported)",
        )
    mode = entry.external_attr >> 16
    for test, kind in _LINK_OR_SPECIAL:
        if mode and test(mode):
            raise reject(archive, f"member {name!r} is {kind}")
    is_dir = name.endswith("/") or bool(mode and stat.S_ISDIR(mode))
    if is_dir and entry.file_size:
        raise reject(archive, f"member {name!r} is a directory with {entry.file_size:,} bytes")
    return members.admit(name, is_dir), is_dir


def _pieces(member: IO[bytes]) -> Iterator[bytes]:
    while piece := member.read(_PIECE):
        yield piece


def check_central_directory(file: BinaryIO, archive: str, limits: ArchiveLimits) -> None:
    """Refuses a zip whose end record announces too many entries or too large a directory."""
    size = file.seek(0, 2)
    tail_size = min(size, _EOCD_SIZE + _MAX_COMMENT)
    file.seek(size - tail_size)
    tail = file.read(tail_size)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_SIZE:
        raise reject(archive, "not a zip (no end of central directory record)")
    entries, directory_size = struct.unpack_from("<HL", tail, at + 10)
    locator_at = size - tail_size + at - _ZIP64_LOCATOR_SIZE
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF:
        entries, directory_size = _zip64_counts(file, locator_at, archive)
    if entries > limits.max_members:
        raise reject(archive, f"more than {limits.max_members:,} members ({entries:,})")
    bound = limits.max_members * (_ENTRY_OVERHEAD + limits.max_name_bytes)
    if directory_size > bound:
        raise reject(archive, f"a central directory of {directory_size:,} bytes")


def _zip64_counts(file: BinaryIO, locator_at: int, archive: str) -> tuple[int, int]:
    if locator_at < 0:
        raise UploadRejected(f"{archive}: a zip64 archive without its zip64 locator")
    file.seek(locator_at)
    locator = file.read(_ZIP64_LOCATOR_SIZE)
    if len(locator) < _ZIP64_LOCATOR_SIZE or locator[:4] != _ZIP64_LOCATOR:
        raise reject(archive, "a zip64 archive without its zip64 locator")
    (record_at,) = struct.unpack_from("<Q", locator, 8)
    file.seek(record_at)
    record = file.read(_ZIP64_EOCD_SIZE)
    if len(record) < _ZIP64_EOCD_SIZE or record[:4] != _ZIP64_EOCD:
        raise reject(archive, "a zip64 archive without its zip64 end record")
    entries, directory_size = struct.unpack_from("<QQ", record, 32)
    return int(entries), int(directory_size)
