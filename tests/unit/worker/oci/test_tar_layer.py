"""The tar layer reader against archives written by ``tarfile``: the header forms it must read
(ustar, PAX, GNU long names, base-256 sizes) and every bound it must hold."""

from __future__ import annotations

import io
import tarfile

import pytest

from tests.unit.worker.oci.artifacts import gzipped, special, tar_of, zstd
from worker.errors import InvalidWeights
from worker.oci import tar_layer
from worker.oci.tar_layer import TarEntry, TarReader, decompressed, expansion_budget

LONG = "d/" + "n" * 150 + "/file.bin"


def _read(data: bytes, max_bytes: int = 1 << 20) -> list[tuple[TarEntry, bytes]]:
    reader = TarReader(io.BytesIO(data), max_bytes, "layer")
    return [(entry, b"".join(reader.data())) for entry in reader.entries()]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reads_files_and_directories(fmt: int) -> None:
    directory = special("w", tarfile.DIRTYPE)
    data = tar_of([directory, ("w/a.bin", b"abc" * 1000), ("w/empty", b"")], fmt)
    assert _read(data) == [
        (TarEntry("w/", "dir", 0), b""),
        (TarEntry("w/a.bin", "file", 3000), b"abc" * 1000),
        (TarEntry("w/empty", "file", 0), b""),
    ]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_from_gnu_and_pax_headers(fmt: int) -> None:
    assert _read(tar_of([(LONG, b"x")], fmt)) == [(TarEntry(LONG, "file", 1), b"x")]


@pytest.mark.parametrize(("compression", "pack"), [("gzip", gzipped), ("zstd", zstd)])
def test_compressed_streams(compression: tar_layer.Compression, pack: object) -> None:
    data = pack(tar_of([("a", b"hello")]))  # type: ignore[operator]
    stream = decompressed(io.BytesIO(data), compression)
    reader = TarReader(stream, 100, "layer")
    assert [(e, b"".join(reader.data())) for e in reader.entries()] == [
        (TarEntry("a", "file", 5), b"hello")
    ]


@pytest.mark.parametrize(
    ("member", "what"),
    [
        (special("w/link", tarfile.SYMTYPE, "/etc/passwd"), "a symlink"),
        (special("w/hard", tarfile.LNKTYPE, "../../etc/passwd"), "a hardlink"),
        (special("w/tty", tarfile.CHRTYPE), "a character device"),
        (special("w/disk", tarfile.BLKTYPE), "a block device"),
        (special("w/fifo", tarfile.FIFOTYPE), "a FIFO"),
    ],
)
def test_links_and_special_files_are_refused(member: tarfile.TarInfo, what: str) -> None:
    with pytest.raises(InvalidWeights) as caught:
        _read(tar_of([member]))
    assert caught.value.message == f"layer: member {member.name!r} is {what}; refusing to unpack it"


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_a_huge_declared_size_is_refused_before_reading(fmt: int) -> None:
    info = tarfile.TarInfo("w/huge")
    info.size = 1 << 40  # base-256 in GNU, a PAX "size" record in PAX; no data follows
    with pytest.raises(InvalidWeights) as caught:
        _read(info.tobuf(fmt) + bytes(1024))
    assert caught.value.message == (
        "layer: member 'w/huge' declares 1,099,511,627,776 bytes, more than the layer may unpack "
        "to; refusing to unpack it"
    )


def test_the_budget_covers_all_members_together() -> None:
    data = tar_of([("a", b"x" * 600), ("b", b"y" * 600)])
    with pytest.raises(InvalidWeights, match=r"member 'b' declares 600 bytes, more than"):
        _read(data, max_bytes=1000)


def test_a_huge_pax_header_is_refused_before_it_is_read() -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 1 << 30
    with pytest.raises(InvalidWeights) as caught:
        _read(info.tobuf(tarfile.USTAR_FORMAT))
    assert caught.value.message == (
        "layer: a tar extension header declares 1,073,741,824 bytes; refusing to unpack it"
    )


def test_the_member_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tar_layer, "MAX_MEMBERS", 3)
    data = tar_of([(f"f{i}", b"") for i in range(4)])
    with pytest.raises(InvalidWeights, match=r"^layer: more than 3 members; refusing"):
        _read(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage!" * 64, "a tar header has a wrong checksum (not a tar stream?)"),
        (tar_of([("a", b"x" * 2000)])[:1536], "the tar stream ends in the middle of an entry"),
        (tar_of([("a", b"x")])[:300], "the tar stream ends in the middle of an entry"),
    ],
)
def test_malformed_streams(data: bytes, message: str) -> None:
    with pytest.raises(InvalidWeights) as caught:
        _read(data)
    assert caught.value.message == f"layer: {message}; refusing to unpack it"


def test_a_corrupt_gzip_stream_is_invalid() -> None:
    data = bytearray(gzipped(tar_of([("a", bytes(range(256)) * 40)])))
    data[20:40] = bytes(20)
    reader = TarReader(decompressed(io.BytesIO(bytes(data)), "gzip"), 1 << 20, "layer")
    with pytest.raises(InvalidWeights, match=r"^layer: the layer does not decompress \("):
        _drain(reader)


def _drain(reader: TarReader) -> None:
    for _ in reader.entries():
        for _ in reader.data():
            pass


def test_expansion_budget() -> None:
    assert expansion_budget(5000, "") == 5000  # a plain tar holds its bytes
    assert expansion_budget(5000, "gzip") == 1 << 30
    assert expansion_budget(10 << 20, "zstd") == (10 << 20) * 1024
