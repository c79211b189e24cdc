"""The materialize journal: appended (never rewritten) per record, flushed in batches after the
file system is synced, torn or foreign lines ignored, compacted when mostly superseded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from worker.errors import UnsafeDestination
from worker.oci import materialize_state
from worker.oci.materialize_state import STATE_FILE, STATE_TEMP, StateJournal
from worker.oci.safe_fs import SafeDirectory, open_root

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def root(tmp_path: Path) -> SafeDirectory:
    return SafeDirectory(open_root(str(tmp_path / "dir")), str(tmp_path / "dir"))


def test_records_are_appended_in_batches_after_a_syncfs(
    root: SafeDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(materialize_state, "syncfs", lambda fd: synced.append(fd))
    monkeypatch.setattr(materialize_state, "FLUSH_EVERY", 3)
    monkeypatch.setattr(materialize_state, "FLUSH_SECONDS", 3600.0)
    path = Path(root.name) / STATE_FILE
    journal = StateJournal(root)
    for index in range(7):
        journal.record(f"f{index}", DIGEST, {f"f{index}": (index, 10 + index)})
    assert len(path.read_bytes().splitlines()) == 6  # two batches of three; one still pending
    assert synced == [root.fd, root.fd]
    journal.close()
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert lines[6] == {"path": "f6", "digest": DIGEST, "files": {"f6": [6, 16]}}
    assert len(synced) == 3

    again = StateJournal(root)
    assert again.is_current("f6", DIGEST, {"f6": (6, 16)})
    assert not again.is_current("f6", DIGEST, {"f6": (6, 17)})
    assert not again.is_current("f6", "sha256:" + "cd" * 32, {"f6": (6, 16)})
    again.close()


def test_torn_and_foreign_lines_are_ignored(root: SafeDirectory) -> None:
    good = json.dumps({"path": "a", "digest": DIGEST, "files": {"a": [1, 2]}})
    junk = [
        '{"path": "b"',
        "[1, 2]",
        '{"path": 7, "digest": "x", "files": {}}',
        '{"old": "format"}',
    ]
    (Path(root.name) / STATE_FILE).write_text("\n".join([good, *junk]))
    journal = StateJournal(root)
    assert list(journal.records) == ["a"]
    journal.close()


def test_a_mostly_superseded_journal_is_compacted(root: SafeDirectory) -> None:
    line = json.dumps({"path": "a", "digest": DIGEST, "files": {"a": [1, 2]}})
    path = Path(root.name) / STATE_FILE
    path.write_text((line + "\n") * 3000)
    StateJournal(root).close()
    assert (
        path.read_text()
        == json.dumps(
            {"digest": DIGEST, "files": {"a": [1, 2]}, "path": "a"}, separators=(",", ":")
        )
        + "\n"
    )
    assert not (Path(root.name) / STATE_TEMP).exists()


def test_an_oversized_journal_is_dropped_not_read(
    root: SafeDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(materialize_state, "MAX_STATE_BYTES", 100)
    line = json.dumps({"path": "a", "digest": DIGEST, "files": {"a": [1, 2]}})
    (Path(root.name) / STATE_FILE).write_text((line + "\n") * 3)
    journal = StateJournal(root)
    assert journal.records == {}
    journal.close()


def test_a_fifo_as_the_journal_is_refused(root: SafeDirectory) -> None:
    os.mkfifo(Path(root.name) / STATE_FILE)
    with pytest.raises(UnsafeDestination, match=rf"{STATE_FILE}: is a FIFO;"):
        StateJournal(root)


def test_a_torn_last_line_does_not_swallow_the_next_record(root: SafeDirectory) -> None:
    path = Path(root.name) / STATE_FILE
    path.write_text('{\n "a": {"digest": "old one-object format"}}')  # no final newline
    journal = StateJournal(root)
    journal.record("b", DIGEST, {"b": (1, 2)})
    journal.close()
    again = StateJournal(root)
    assert list(again.records) == ["b"]
    again.close()
