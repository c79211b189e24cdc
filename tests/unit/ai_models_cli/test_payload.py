"""The payload: a file as it is; a directory as a deterministic tar stream of a known size."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ai_models_cli import payload as payload_module
from ai_models_cli.errors import PayloadChanged, UsageError
from ai_models_cli.payload import FilePayload, TarPayload, open_payload

LONG = "a-very-long-file-name-" + "x" * 120 + ".json"


def model_dir(root: Path) -> Path:
    model = root / "my-model"
    (model / "sub" / "deeper").mkdir(parents=True)
    (model / "empty").mkdir()
    (model / "config.json").write_text('{"architectures": ["BertModel"]}')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 40)  # 10240: block-aligned
    (model / "run.sh").write_text("#!/bin/sh\n")
    (model / "run.sh").chmod(0o750)
    (model / "zero").write_bytes(b"")
    (model / "sub" / "tokenizer.json").write_text("{}" * 300)
    (model / "sub" / "deeper" / LONG).write_text("long")
    (model / "sub" / "naïve.txt").write_text("utf-8 name")
    return model


def produce(payload: TarPayload | FilePayload) -> bytes:
    return b"".join(payload.blocks())


def test_the_tar_stream_is_exactly_its_announced_size_and_tarfile_reads_it(tmp_path: Path) -> None:
    found = open_payload(model_dir(tmp_path))
    assert isinstance(found, TarPayload)
    assert found.filename == "my-model.tar"
    data = produce(found)
    assert len(data) == found.size
    assert found.size % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [
            "my-model",
            "my-model/config.json",
            "my-model/empty",
            "my-model/model.safetensors",
            "my-model/run.sh",
            "my-model/sub",
            "my-model/sub/deeper",
            f"my-model/sub/deeper/{LONG}",
            "my-model/sub/naïve.txt",
            "my-model/sub/tokenizer.json",
            "my-model/zero",
        ]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        modes = {m.name.rpartition("/")[2]: (m.type, m.mode) for m in members}
        assert modes["my-model"] == (tarfile.DIRTYPE, 0o755)
        assert modes["empty"] == (tarfile.DIRTYPE, 0o755)
        assert modes["run.sh"] == (tarfile.REGTYPE, 0o755)
        assert modes["config.json"] == (tarfile.REGTYPE, 0o644)
        for member in members:
            if member.isfile():
                source = tmp_path / member.name
                extracted = archive.extractfile(member)
                assert extracted is not None
                assert extracted.read() == source.read_bytes()


def test_the_stream_equals_what_tarfile_writes_for_the_same_members(tmp_path: Path) -> None:
    found = open_payload(model_dir(tmp_path))
    assert isinstance(found, TarPayload)
    data = produce(found)
    written = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as produced:
        members = produced.getmembers()
    with tarfile.open(fileobj=written, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            path = tmp_path / member.name
            if member.isfile():
                with path.open("rb") as handle:
                    archive.addfile(member, handle)
            else:
                archive.addfile(member)
    assert written.getvalue() == data


def test_the_stream_does_not_depend_on_times_owners_or_listing_order(tmp_path: Path) -> None:
    model = model_dir(tmp_path)
    first = produce(open_payload(model))  # type: ignore[arg-type]
    for path in model.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (model / "config.json").chmod(0o600)  # still "not executable": 0644 in the archive
    assert produce(open_payload(model)) == first  # type: ignore[arg-type]


def test_a_symlink_in_the_directory_is_refused_with_its_path(tmp_path: Path) -> None:
    model = model_dir(tmp_path)
    (model / "sub" / "link.json").symlink_to(model / "config.json")
    with pytest.raises(UsageError, match=r"sub/link\.json is a symbolic link: links are not"):
        open_payload(model)


def test_a_fifo_in_the_directory_is_refused(tmp_path: Path) -> None:
    model = model_dir(tmp_path)
    os.mkfifo(model / "pipe")
    with pytest.raises(UsageError, match=r"/pipe is not a regular file or a directory; remove it"):
        open_payload(model)


def test_more_members_than_the_unpacker_takes_are_refused_before_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payload_module, "MAX_MEMBERS", 5)
    with pytest.raises(UsageError, match=r"my-model: more than 5 files and directories"):
        open_payload(model_dir(tmp_path))


def test_a_member_name_over_the_unpacker_bound_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m"
    deep = model / "/".join(["d" * 200] * 5)
    deep.mkdir(parents=True)
    (deep / ("x" * 30 + ".json")).write_text("{}")  # 1,043 bytes with "m/"
    with pytest.raises(UsageError, match=r"x\.json: the path is longer than 1024 bytes"):
        open_payload(model)


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "nothing" / "inside").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"nothing holds no files"):
        open_payload(tmp_path / "nothing")


def test_a_file_is_sent_as_it_is_under_its_own_name(tmp_path: Path) -> None:
    gguf = tmp_path / "SmolLM2.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + bytes(5000))
    found = open_payload(gguf)
    assert found == FilePayload(gguf, "SmolLM2.Q4_1.gguf", 5004)
    assert produce(found) == gguf.read_bytes()


@pytest.mark.parametrize("name", ["weights.bin", "model.tar.bz2", "notes"])
def test_a_file_of_another_format_is_refused_naming_the_accepted_ones(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(UsageError, match=r"not an accepted upload; .*\.gguf, \.safetensors, \.tar"):
        open_payload(tmp_path / name)


def test_a_missing_path_says_so(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"absent: no such file or directory"):
        open_payload(tmp_path / "absent")


def test_a_file_that_changes_while_it_is_sent_stops_the_stream(tmp_path: Path) -> None:
    model = model_dir(tmp_path)
    found = open_payload(model)
    (model / "config.json").write_text("{}")
    with pytest.raises(PayloadChanged, match=r"config\.json shrank while it was being sent"):
        produce(found)  # type: ignore[arg-type]
    (model / "config.json").write_text("{}" * 1000)
    with pytest.raises(PayloadChanged, match=r"config\.json grew while it was being sent"):
        produce(found)  # type: ignore[arg-type]
