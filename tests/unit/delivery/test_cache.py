"""The blob store on a temp directory with fake fetches: verification on write and read, single
flight, LRU eviction within the budget, pins, restart."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery.cache import BlobCorrupt, BlobStore, Piece
from delivery.metrics import DeliveryMetrics


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Upstream:
    """Counts fetches; can hold a fetch until released, or send other bytes."""

    def __init__(self, data: bytes, chunk: int = 4) -> None:
        self.data = data
        self.chunk = chunk
        self.fetches = 0
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def __call__(self) -> Iterator[bytes]:
        self.fetches += 1
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        for start in range(0, len(self.data), self.chunk):
            yield self.data[start : start + self.chunk]


def _store(tmp_path: Path, budget: int = 1 << 20) -> tuple[BlobStore, DeliveryMetrics]:
    metrics = DeliveryMetrics()
    return BlobStore(tmp_path / "cache", budget, metrics, chunk_size=4), metrics


def _read(store: BlobStore, data: bytes, upstream: Upstream, offset: int = 0) -> bytes:
    return _joined(store.stream(_digest(data), len(data), upstream, offset))


def _joined(chunks: Iterator[Piece]) -> bytes:
    """Each piece copied as it comes: a piece read from disk is a view the next read reuses."""
    return b"".join(bytes(piece) for piece in chunks)


def _drain(chunks: Iterator[Piece], into: list[bytes]) -> None:
    into.extend(bytes(piece) for piece in chunks)


def test_a_miss_is_fetched_once_stored_verified_then_served_from_disk(tmp_path: Path) -> None:
    store, metrics = _store(tmp_path)
    data = b"0123456789abcdef!"
    upstream = Upstream(data)
    assert _read(store, data, upstream) == data
    assert _read(store, data, upstream) == data
    assert _read(store, data, upstream, offset=5) == data[5:]
    assert upstream.fetches == 1
    assert store.path(_digest(data)).read_bytes() == data
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    assert metrics.value("ai_models_delivery_cache_misses_total") == 1
    assert metrics.value("ai_models_delivery_cache_hits_total") == 2
    assert metrics.value("ai_models_delivery_registry_bytes_total") == len(data)


def test_the_first_client_gets_its_range_while_the_whole_blob_is_stored(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    data = bytes(range(50))
    assert _read(store, data, Upstream(data), offset=13) == data[13:]
    assert store.path(_digest(data)).read_bytes() == data


def test_fetched_bytes_that_do_not_match_are_never_completed_nor_stored(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    data = b"the right bytes, twelve+"
    wrong = Upstream(b"the wrong bytes, twelve+")
    received: list[bytes] = []
    with pytest.raises(BlobCorrupt):
        _drain(store.stream(_digest(data), len(data), wrong), received)
    assert len(b"".join(received)) < len(data)  # the last chunk is held back
    assert not store.has(_digest(data))
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    with pytest.raises(BlobCorrupt, match="more than 4 bytes"):
        _joined(store.stream(_digest(b"abcd"), 4, Upstream(b"abcdef")))


def test_a_corrupt_cached_file_is_cut_short_deleted_and_refetched(tmp_path: Path) -> None:
    store, metrics = _store(tmp_path)
    data = b"A" * 40
    upstream = Upstream(data)
    _read(store, data, upstream)
    path = store.path(_digest(data))
    path.write_bytes(b"A" * 20 + b"B" + b"A" * 19)
    received: list[bytes] = []
    with pytest.raises(BlobCorrupt, match="is corrupt; removed"):
        _drain(store.stream(_digest(data), len(data), upstream), received)
    assert b"".join(received) == b"A" * 20 + b"B" + b"A" * 15  # never the whole body
    assert not path.exists()
    assert not store.has(_digest(data))
    assert metrics.value("ai_models_delivery_cache_corrupt_total") == 1
    assert _read(store, data, upstream) == data
    assert upstream.fetches == 2
    path.write_bytes(data[:-1])  # truncated: the size check
    with pytest.raises(BlobCorrupt):
        _read(store, data, upstream)


def test_concurrent_requests_for_one_digest_share_one_fetch(tmp_path: Path) -> None:
    store, metrics = _store(tmp_path)
    data = bytes(range(200))
    upstream = Upstream(data)
    upstream.gate = threading.Event()
    results: list[bytes] = []

    def read() -> None:
        results.append(_read(store, data, upstream))

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    assert upstream.started.wait(5)
    upstream.gate.set()
    for thread in threads:
        thread.join(10)
    assert results == [data] * 6
    assert upstream.fetches == 1
    assert metrics.value("ai_models_delivery_cache_misses_total") == 1


def test_when_the_leader_fails_a_waiter_fetches_again(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    data = b"x" * 32
    calls = {"n": 0}
    started, release = threading.Event(), threading.Event()

    def flaky() -> Iterator[bytes]:
        calls["n"] += 1
        if calls["n"] == 1:
            started.set()
            release.wait(5)
            raise ConnectionError("registry went away")
        yield data

    errors: list[BaseException] = []

    def leader() -> None:
        try:
            _joined(store.stream(_digest(data), len(data), flaky))
        except ConnectionError as error:
            errors.append(error)

    first = threading.Thread(target=leader)
    first.start()
    assert started.wait(5)
    waiter: list[bytes] = []
    second = threading.Thread(target=lambda: waiter.append(_read_any(store, data, flaky)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert len(errors) == 1
    assert waiter == [data]
    assert calls["n"] == 2


def _read_any(store: BlobStore, data: bytes, fetch: object) -> bytes:
    return _joined(store.stream(_digest(data), len(data), fetch))  # type: ignore[arg-type]


def test_the_least_recently_used_blob_is_evicted_to_stay_within_budget(tmp_path: Path) -> None:
    store, metrics = _store(tmp_path, budget=100)
    a, b, c = b"a" * 40, b"b" * 40, b"c" * 40
    for blob in (a, b):
        _read(store, blob, Upstream(blob))
    _read(store, a, Upstream(a))  # a is now the most recently used
    _read(store, c, Upstream(c))
    assert (store.has(_digest(a)), store.has(_digest(b)), store.has(_digest(c))) == (
        True, False, True,
    )  # fmt: skip
    assert not store.path(_digest(b)).exists()
    assert store.used_bytes == 80
    assert metrics.value("ai_models_delivery_evictions_total") == 1
    assert metrics.value("ai_models_delivery_cache_bytes") == 80


def test_a_blob_being_read_is_never_evicted_and_an_oversized_one_passes_through(
    tmp_path: Path,
) -> None:
    store, metrics = _store(tmp_path, budget=100)
    a, b = b"a" * 60, b"b" * 60
    _read(store, a, Upstream(a))
    reading = store.stream(_digest(a), len(a), Upstream(a))
    assert next(reading) == b"aaaa"  # a is pinned while this read is open
    upstream_b = Upstream(b)
    assert _read(store, b, upstream_b) == b  # no room: streamed through, verified, not stored
    assert store.has(_digest(a))
    assert not store.has(_digest(b))
    assert b"aaaa" + _joined(reading) == a
    _read(store, b, upstream_b)  # a is free now: evicted for b
    assert store.has(_digest(b))
    assert not store.has(_digest(a))
    assert upstream_b.fetches == 2
    huge = b"h" * 101
    assert _read(store, huge, Upstream(huge)) == huge
    assert not store.has(_digest(huge))
    assert metrics.value("ai_models_delivery_evictions_total") == 1


def test_a_restart_keeps_verified_blobs_in_their_access_order_and_drops_partials(
    tmp_path: Path,
) -> None:
    store, _ = _store(tmp_path, budget=100)
    a, b, c = b"a" * 40, b"b" * 40, b"c" * 40
    _read(store, a, Upstream(a))
    _read(store, b, Upstream(b))
    _read(store, a, Upstream(a))
    (tmp_path / "cache" / "tmp" / "leftover.partial").write_bytes(b"half")
    again, _ = _store(tmp_path, budget=100)
    assert again.used_bytes == 80
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    _read(again, c, Upstream(c))
    assert again.has(_digest(a))
    assert not again.has(_digest(b))
