"""Archives for the unpacker's tests, built in memory: tar members of any type (links, devices,
FIFOs, odd names), zips with forged flags, modes and sizes, bombs made of zeros, and the
runner that unpacks one into ``<tmp>/box/dest`` (so that anything written beside the destination
can be seen in ``box``)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import zstandard

from worker.archive import ArchiveKind, ArchiveLimits, Unpacked, unpack_tar
from worker.archive_streams import RawStream
from worker.archive_zip import unpack_zip

Member = tuple[tarfile.TarInfo, bytes]
SMALL = ArchiveLimits(ratio_grace_bytes=1 << 20)
"""Default limits, except that the ratio is checked after 1 MiB (small bombs suffice)."""


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, len(data), link, 0o644
    return info, data


def tar_of(members: list[Member], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def compress(data: bytes, kind: ArchiveKind) -> bytes:
    if kind == "tar.gz":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if kind == "tar.zst":
        return zstandard.ZstdCompressor(write_checksum=True).compress(data)
    return data


def zip_of(entries: list[tuple[zipfile.ZipInfo | str, bytes]], method: int = 8) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method, compresslevel=1) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def zip_info(name: str, mode: int = 0, flags: int = 0, method: int = 8) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, mode << 16
    info.flag_bits |= flags
    info.compress_type = method
    return info


def zeros_tar_gz(name: str, size: int) -> bytes:
    """A tar.gz of one file of ``size`` zero bytes, compressed as it is made (no big buffer)."""
    info = tarfile.TarInfo(name)
    info.size = size
    header = info.tobuf(tarfile.PAX_FORMAT)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(header)]
    zeros = bytes(1 << 20)
    left = size + (-size % 512) + 1024
    while left:
        piece = zeros[: min(left, len(zeros))]
        parts.append(compressor.compress(piece))
        left -= len(piece)
    parts.append(compressor.flush())
    return b"".join(parts)


def stored_zip64(name: str, data: bytes, declared: int) -> bytes:
    """One stored entry whose zip64 extra field declares ``declared`` bytes (the data holds
    ``len(data)``, the CRC is right): a size that lies against the data."""
    crc, encoded = zlib.crc32(data), name.encode()
    extra = struct.pack("<HHQQ", 1, 16, declared, len(data))
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, 0, 0, 0, crc, 0xFFFFFFFF,
                        0xFFFFFFFF, len(encoded), len(extra)) + encoded + extra  # fmt: skip
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF,
                          0xFFFFFFFF, len(encoded), len(extra), 0, 0, 0, 0, 0)  # fmt: skip
    central += encoded + extra
    body = local + data
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(body), 0)
    return body + central + end


def chunks(data: bytes, size: int = 64 << 10) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def unpack(
    tmp_path: Path, data: bytes, kind: ArchiveKind, limits: ArchiveLimits = SMALL
) -> Unpacked:
    dest = tmp_path / "box" / "dest"
    name = f"up.{kind}"
    if kind == "zip":
        spooled = tmp_path / "spool.zip"
        spooled.write_bytes(data)
        return unpack_zip(spooled, dest, name, limits)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    raw = RawStream(chunks(data), size=len(data), digest=digest, where=name,
                    zstd=kind == "tar.zst")  # fmt: skip
    done = unpack_tar(raw, kind, dest, name, limits)
    raw.finish()
    return done


def written(tmp_path: Path) -> tuple[list[str], int]:
    """Every path under ``box`` (relative to it) and the bytes of its regular files."""
    box = tmp_path / "box"
    paths, total = [], 0
    for directory, dirs, files in os.walk(box):
        for name in dirs + files:
            full = Path(directory) / name
            paths.append(full.relative_to(box).as_posix())
            if full.is_file() and not full.is_symlink():
                total += full.stat().st_size
    return sorted(paths), total


def archive_of(kind: ArchiveKind, files: dict[str, bytes], prefix: str = "") -> bytes:
    """``files`` (path → bytes) as an archive of ``kind``, under ``prefix`` when given."""
    if kind == "zip":
        return zip_of([(prefix + name, data) for name, data in files.items()])
    dirs = [member(prefix.rstrip("/"), kind=tarfile.DIRTYPE)] if prefix else []
    return compress(tar_of(dirs + [member(prefix + n, d) for n, d in files.items()]), kind)
