"""The upload unpacker against hostile archives and good ones.

Every bad archive is refused with ``UploadRejected`` and its exact message, and nothing appears
beside the destination (``<tmp>/box/dest``: the test looks at all of ``box``). Bombs are refused
while they unpack: the bytes on disk stay within the bound, far below what the archive holds.
Good archives of every format unpack to byte-identical files, the real MiniLM directory too.
"""

from __future__ import annotations

import re
import stat
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from tests.unit.worker.archive_builders import (
    SMALL,
    archive_of,
    compress,
    member,
    stored_zip64,
    tar_of,
    unpack,
    written,
    zeros_tar_gz,
    zip_info,
    zip_of,
)
from worker.archive import ArchiveKind, ArchiveLimits
from worker.errors import UploadRejected

REFUSING = "; refusing to unpack it"
Build = Callable[[], bytes]


def _warnless_zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it writes
        return zip_of(entries)


def _encrypted_flag(data: bytes) -> bytes:
    """Sets the 'encrypted' bit of the first central directory entry (zipfile clears it)."""
    at = data.index(b"PK\x01\x02") + 8
    return data[:at] + bytes([data[at] | 1]) + data[at + 1 :]


def _first_half(kind: ArchiveKind) -> bytes:
    data = compress(tar_of([member("m/a", bytes(range(256)) * 64)]), kind)
    return data[: len(data) // 2]


def _many(count: int) -> bytes:
    return tar_of([member(f"m/f{i}") for i in range(count)])


BAD: list[tuple[str, ArchiveKind, Build, ArchiveLimits, str]] = [
    ("dotdot", "tar", lambda: tar_of([member("../evil", b"x")]), SMALL,
     "member '../evil' has a '..' component"),
    ("dotdot-inside", "tar.gz", lambda: compress(tar_of([member("m/../../evil", b"x")]), "tar.gz"),
     SMALL, "member 'm/../../evil' has a '..' component"),
    ("absolute", "tar", lambda: tar_of([member("/etc/passwd", b"x")]), SMALL,
     "member '/etc/passwd' is an absolute path"),
    ("symlink", "tar", lambda: tar_of([member("m/link", kind=tarfile.SYMTYPE, link="/etc")]),
     SMALL, "member 'm/link' is a symlink"),
    ("hardlink", "tar", lambda: tar_of([member("m/a", b"x"),
                                        member("m/b", kind=tarfile.LNKTYPE, link="m/a")]),
     SMALL, "member 'm/b' is a hardlink"),
    ("char-device", "tar", lambda: tar_of([member("m/tty", kind=tarfile.CHRTYPE)]), SMALL,
     "member 'm/tty' is a character device"),
    ("block-device", "tar", lambda: tar_of([member("m/sda", kind=tarfile.BLKTYPE)]), SMALL,
     "member 'm/sda' is a block device"),
    ("fifo", "tar.zst", lambda: compress(tar_of([member("m/p", kind=tarfile.FIFOTYPE)]), "tar.zst"),
     SMALL, "member 'm/p' is a FIFO"),
    ("other-type", "tar", lambda: tar_of([member("m/v", kind=b"V")]), SMALL,
     "member 'm/v' has the unsupported tar type b'V'"),
    ("duplicate", "tar", lambda: tar_of([member("m/a", b"1"), member("m/a", b"2")]), SMALL,
     "member 'm/a' appears twice"),
    ("below-a-file", "tar", lambda: tar_of([member("m/a", b"1"), member("m/a/b", b"2")]), SMALL,
     "member 'm/a/b' lies below the file 'm/a'"),
    ("file-over-dir", "tar", lambda: tar_of([member("m/a/b", b"1"), member("m/a", b"2")]), SMALL,
     "member 'm/a' is a file where the archive has a directory"),
    ("control-character", "tar", lambda: tar_of([member("m/a\nb", b"x")]), SMALL,
     "member 'm/a\\nb' has control characters in its name"),
    ("backslash", "tar", lambda: tar_of([member("m\\..\\evil", b"x")]), SMALL,
     "member 'm\\\\..\\\\evil' has a backslash in its name"),
    ("long-name", "tar", lambda: tar_of([member("m/" + "a" * 1100, b"x")]), SMALL,
     f"member {'m/' + 'a' * 198!r} has a name of 1,102 bytes, over 1024"),
    ("long-component", "tar", lambda: tar_of([member("m/" + "c" * 256, b"x")]), SMALL,
     f"member {'m/' + 'c' * 198!r} has a path component over 255 bytes"),
    ("deep", "tar", lambda: tar_of([member("/".join(["d"] * 32 + ["f"]), b"x")]), SMALL,
     f"member {'/'.join(['d'] * 32 + ['f'])!r} nests 33 deep, over 32"),
    ("too-many-members", "tar", lambda: _many(10_001), SMALL, "more than 10,000 members"),
    ("over-the-size-limit", "tar", lambda: tar_of([member("m/big", bytes(2000))]),
     ArchiveLimits(max_expanded_bytes=1000),
     "member 'm/big' declares 2,000 bytes, more than the archive may unpack to"),
    ("truncated-gzip", "tar.gz",
     lambda: _first_half("tar.gz"),
     SMALL, "the archive does not decompress (Compressed file ended before the end-of-stream "
     "marker was reached)"),
    ("gzip-without-trailer", "tar.gz",
     lambda: compress(tar_of([member("m/a", b"x")]), "tar.gz")[:-4], SMALL,
     "the gzip stream is truncated"),
    ("truncated-zstd", "tar.zst",
     lambda: _first_half("tar.zst"),
     SMALL, "the zstd stream is truncated"),
    ("zstd-without-checksum", "tar.zst",
     lambda: compress(tar_of([member("m/a", b"x")]), "tar.zst")[:-2], SMALL,
     "the zstd stream is truncated"),
    ("tar-without-end", "tar", lambda: tar_of([member("m/a", b"x")])[:1024], SMALL,
     "the tar stream ends without its end-of-archive marker (truncated?)"),
    ("zip-duplicate", "zip", lambda: _warnless_zip([("m/a", b"1"), ("m/a", b"2")]), SMALL,
     "member 'm/a' appears twice"),
    ("zip-symlink", "zip", lambda: zip_of([(zip_info("m/l", stat.S_IFLNK | 0o777), b"/etc")]),
     SMALL, "member 'm/l' is a symlink"),
    ("zip-fifo", "zip", lambda: zip_of([(zip_info("m/p", stat.S_IFIFO | 0o644), b"")]), SMALL,
     "member 'm/p' is a FIFO"),
    ("zip-encrypted", "zip", lambda: _encrypted_flag(zip_of([("m/a", b"secret")])), SMALL,
     "member 'm/a' is encrypted"),
    ("zip-bzip2", "zip", lambda: zip_of([(zip_info("m/a", method=12), b"x")]), SMALL,
     "member 'm/a' uses compression method 12 (only stored and deflate are supported)"),
    ("zip64-lying-size", "zip", lambda: stored_zip64("m/a", b"abc" * 10, 3000), SMALL,
     "member 'm/a' holds 30 bytes, its header says 3,000"),
    ("zip-dotdot", "zip", lambda: zip_of([("../evil", b"x")]), SMALL,
     "member '../evil' has a '..' component"),
    ("zip-absolute", "zip", lambda: zip_of([("/evil", b"x")]), SMALL,
     "member '/evil' is an absolute path"),
    ("zip-too-many", "zip", lambda: zip_of([(f"m/{i}", b"") for i in range(4)]),
     ArchiveLimits(max_members=3), "more than 3 members (4)"),
    ("zip-declares-too-much", "zip", lambda: zip_of([("m/a", bytes(100))]),
     ArchiveLimits(max_expanded_bytes=10),
     "its entries declare 100 bytes, more than the limit of 10"),
    ("not-a-zip", "zip", lambda: b"hello", SMALL, "not a zip (no end of central directory record)"),
]  # fmt: skip


def _only_inside(paths: list[str]) -> None:
    outside = [p for p in paths if p != "dest" and not p.startswith("dest/")]
    assert outside == []


@pytest.mark.parametrize(
    ("kind", "build", "limits", "problem"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_archives_are_rejected_naming_the_member(
    tmp_path: Path, kind: ArchiveKind, build: Build, limits: ArchiveLimits, problem: str
) -> None:
    with pytest.raises(UploadRejected) as caught:
        unpack(tmp_path, build(), kind, limits)
    assert caught.value.message == f"up.{kind}: {problem}{REFUSING}"
    assert caught.value.to_termination_message()["reason"] == "UploadRejected"
    assert caught.value.exit_code == 2
    _only_inside(written(tmp_path)[0])


def test_an_absolute_name_into_the_box_writes_nothing_there(tmp_path: Path) -> None:
    target = tmp_path / "box" / "evil"
    with pytest.raises(UploadRejected, match="is an absolute path"):
        unpack(tmp_path, tar_of([member(str(target), b"x")]), "tar")
    assert not target.exists()
    assert written(tmp_path) == (["dest"], 0)


_BOMB_MESSAGE = re.compile(
    r"^up\.(tar\.gz|tar\.zst|zip): ([\d,]+) bytes came out of ([\d,]+) compressed bytes, more than "
    r"200:1 \(a decompression bomb\?\); refusing to unpack it$"
)


def _header_flood() -> bytes:
    """8 MiB of PAX extended headers and not one member: nothing to write, all to parse."""
    info = tarfile.TarInfo("m/a")
    info.pax_headers = {"comment": "c" * 400}
    one = info.tobuf(tarfile.PAX_FORMAT)[:1024]  # the 'x' header block and its records
    return compress(one * 8192, "tar.zst")


BOMBS: dict[str, tuple[ArchiveKind, Callable[[], bytes]]] = {
    "gzip": ("tar.gz", lambda: zeros_tar_gz("m/zeros", 64 << 20)),
    "zstd": ("tar.zst", lambda: compress(tar_of([member("m/zeros", bytes(64 << 20))]), "tar.zst")),
    "zip": ("zip", lambda: zip_of([("m/zeros", bytes(64 << 20))])),
    "header-flood": ("tar.zst", _header_flood),
}


@pytest.mark.parametrize("name", BOMBS)
def test_a_bomb_stops_while_it_unpacks(tmp_path: Path, name: str) -> None:
    kind, build = BOMBS[name]
    bomb = build()
    with pytest.raises(UploadRejected) as caught:
        unpack(tmp_path, bomb, kind, SMALL)
    found = _BOMB_MESSAGE.match(caught.value.message)
    assert found is not None, caught.value.message
    paths, on_disk = written(tmp_path)
    _only_inside(paths)
    # Refused before the piece that broke the ratio was written: within the first MiB or 200
    # times what was read (never more than the archive), and far below the 64 MiB inside.
    bound = max(SMALL.ratio_grace_bytes, 200 * len(bomb))
    assert on_disk <= bound
    assert on_disk < int(found.group(2).replace(",", ""))
    assert on_disk < 64 << 20


def test_a_bomb_with_the_real_limits_stops_after_64_mib(tmp_path: Path) -> None:
    bomb = zeros_tar_gz("m/zeros", 256 << 20)  # 256 MiB of zeros in about 256 KiB
    assert len(bomb) < 1 << 20
    with pytest.raises(UploadRejected, match=_BOMB_MESSAGE):
        unpack(tmp_path, bomb, "tar.gz", ArchiveLimits())
    # Every byte out of the decompressor counts: the 1 MiB piece that would pass 64 MiB is
    # refused, so the file on disk holds between 63 and 64 MiB.
    assert (63 << 20) <= written(tmp_path)[1] <= 64 << 20


# ---- good archives ---------------------------------------------------------------------------

FILES = {"config.json": b'{"model_type": "bert"}', "sub/w.safetensors": bytes(range(256)) * 300}


def _contents(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "tar.zst", "zip"])
@pytest.mark.parametrize("prefix", ["", "my-model/", "./my-model/"])
def test_good_archives_unpack_byte_identical(
    tmp_path: Path, kind: ArchiveKind, prefix: str
) -> None:
    done = unpack(tmp_path, archive_of(kind, FILES, prefix), kind)
    dest = tmp_path / "box" / "dest"
    assert done.root == (dest / "my-model" if prefix else dest)
    assert _contents(done.root) == FILES
    assert (done.files, done.bytes) == (2, sum(len(d) for d in FILES.values()))
    assert stat.S_IMODE((done.root / "config.json").stat().st_mode) == 0o644


def test_long_gnu_names_and_multi_frame_zstd(tmp_path: Path) -> None:
    name = "m/" + "n" * 200 + "/" + "o" * 200
    data = tar_of([member(name, b"x" * 5000)], fmt=tarfile.GNU_FORMAT)
    half = len(data) // 2
    compressor = zstandard.ZstdCompressor()
    frames = compressor.compress(data[:half]) + compressor.compress(data[half:])
    done = unpack(tmp_path, frames, "tar.zst")
    assert _contents(done.root) == {name[2:]: b"x" * 5000}


def test_two_top_level_entries_keep_the_destination_as_root(tmp_path: Path) -> None:
    done = unpack(tmp_path, tar_of([member("a/x", b"1"), member("b/y", b"2")]), "tar")
    assert done.root == tmp_path / "box" / "dest"


def test_a_zip_directory_by_its_unix_mode_alone_is_a_directory(tmp_path: Path) -> None:
    entries: list[tuple[zipfile.ZipInfo | str, bytes]] = [
        (zip_info("m/sub", stat.S_IFDIR | 0o755), b""),
        ("m/sub/a", b"1"),
    ]
    done = unpack(tmp_path, zip_of(entries), "zip")
    assert (done.root.name, _contents(done.root)) == ("m", {"sub/a": b"1"})
