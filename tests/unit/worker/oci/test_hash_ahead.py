"""HashAhead: a local plan's large files hashed in upload order by up to ``slots`` threads, no
further ahead than the uploads waiting for them plus one file; it stops with the transfer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from worker.oci.hash_ahead import HashAhead
from worker.plan import PlannedFile

FILES = [PlannedFile(name, 10, "weight") for name in ("a", "b", "c")]


class Cancelled(Exception):  # noqa: N818 - stands for publish's own
    pass


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.started: list[str] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, planned: PlannedFile) -> str:
        self.started.append(planned.path)
        self.threads.add(threading.current_thread().name)
        if planned.path == self.fail_on:
            raise OSError(f"{planned.path}: unreadable")
        return f"sha256:{planned.path}"


def _wait_for(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def _ahead(recorder: Recorder, stop: threading.Event | None = None, slots: int = 1) -> HashAhead:
    stop = stop or threading.Event()
    return HashAhead(FILES, recorder, slots=slots, stop=stop, cancelled=Cancelled)


def test_files_are_hashed_in_order_one_ahead_of_the_digests_taken() -> None:
    recorder = Recorder()
    ahead = _ahead(recorder)
    try:
        assert ahead.digest(FILES[0]) == "sha256:a"
        _wait_for(lambda: recorder.started == ["a", "b"])
        time.sleep(0.3)  # "c" waits until an upload takes "b"
        assert recorder.started == ["a", "b"]
        assert ahead.digest(FILES[1]) == "sha256:b"
        assert ahead.digest(FILES[2]) == "sha256:c"
    finally:
        ahead.close()
    assert recorder.started == ["a", "b", "c"]
    assert len(recorder.threads) == 1  # one slot, one thread
    assert FILES[0] in ahead
    assert PlannedFile("other", 10, "weight") not in ahead


def test_waiting_uploads_get_their_passes_at_once_and_busy_ones_one_file_ahead() -> None:
    files = [*FILES, PlannedFile("d", 10, "weight")]
    both = threading.Barrier(2, timeout=5)
    recorder = Recorder()

    def hash_one(planned: PlannedFile) -> str:
        if planned.path in ("a", "b"):
            both.wait()  # breaks (an error) unless "a" and "b" are hashed at the same time
        return recorder(planned)

    ahead = HashAhead(files, hash_one, slots=2, stop=threading.Event(), cancelled=Cancelled)
    try:
        with ThreadPoolExecutor(max_workers=2) as uploads:  # two slots waiting for a digest
            taken = list(uploads.map(ahead.digest, files[:2]))
        assert taken == ["sha256:a", "sha256:b"]
        # Both slots now send: one file ("c") is hashed ahead, the next waits for a slot.
        _wait_for(lambda: len(recorder.started) == 3)
        time.sleep(0.3)
        assert sorted(recorder.started) == ["a", "b", "c"]
        assert ahead.digest(files[2]) == "sha256:c"
        assert ahead.digest(files[3]) == "sha256:d"
    finally:
        ahead.close()
    assert len(recorder.threads) == 2


def test_a_stopped_transfer_ends_the_waiting_passes_and_close_returns() -> None:
    recorder, stop = Recorder(), threading.Event()
    ahead = _ahead(recorder, stop)
    _wait_for(lambda: recorder.started == ["a"])
    stop.set()
    started = time.monotonic()
    ahead.close()
    assert time.monotonic() - started < 2.0
    assert recorder.started == ["a"]
    with pytest.raises(Cancelled, match=r"^b$"):
        ahead.digest(FILES[1])
    with pytest.raises(Cancelled, match=r"^c$"):
        ahead.digest(FILES[2])


def test_a_failed_hash_pass_is_raised_by_its_digest() -> None:
    ahead = _ahead(Recorder(fail_on="a"))
    try:
        with pytest.raises(OSError, match=r"^a: unreadable$"):
            ahead.digest(FILES[0])
        assert ahead.digest(FILES[1]) == "sha256:b"
    finally:
        ahead.close()
