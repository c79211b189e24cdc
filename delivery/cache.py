"""The node-local blob cache: a disk store keyed by digest, one upstream fetch per digest.

Layout: ``<root>/blobs/sha256/<hex>`` (complete, verified blobs only) and ``<root>/tmp/``
(downloads in progress, removed at start). A download is written to a temp file while it is
hashed and streamed to the first client, then checked (size and sha256), ``fsync``ed and renamed
into place; nothing unverified ever sits under ``blobs/``.

Single flight: the first request for a digest the cache lacks fetches it; requests for the same
digest that arrive meanwhile wait for that fetch to end and then read the file (simpler than
streaming from a file still being written, and correct: they never see unverified bytes). When
the fetch fails (or its client went away mid-way), one of the waiters fetches again.

Verified on read: every serve hashes the file while streaming it and holds back the last chunk
until the digest matched. A file whose bytes no longer match (disk corruption, tampering) is
never completed: the connection is cut short — the client sees an incomplete body and retries
(``materialize`` verifies every blob too) — and the entry is deleted, so the next request
fetches it again from the registry. A ranged read hashes the skipped prefix without sending it.

Budget: at most ``budget_bytes`` of blobs, downloads in progress included; least recently
used blobs (access order, persisted as the file's mtime across restarts) are evicted to make
room, never one being read or written. A blob that does not fit even then is streamed through
without being stored (and counted as a miss).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path
from typing import BinaryIO

from delivery.metrics import DeliveryMetrics

CHUNK_SIZE = 256 << 10
"""Bytes per read, hash and send: small enough to stay in the CPU's L2 cache between the three
(with 4 MiB pieces every copy ran at memory speed: 2-4x the system CPU, docs/performance.md)."""
Piece = bytes | memoryview
"""A piece of a blob; a ``memoryview`` is only valid until the next piece is asked for."""
Fetch = Callable[[], Iterator[bytes]]
"""Opens the blob's bytes from the registry, from offset 0."""


class BlobCorrupt(Exception):  # noqa: N818 - the response is aborted, the client retries
    """Bytes (cached or fetched) that do not hash to their digest or have another size."""


@dataclass
class _Entry:
    size: int
    readers: int = 0


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)


class BlobStore:
    """Thread-safe; one instance per cache directory."""

    def __init__(
        self,
        root: Path,
        budget_bytes: int,
        metrics: DeliveryMetrics,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.root = root
        self.budget = budget_bytes
        self._metrics = metrics
        self._chunk = chunk_size
        self._blobs = root / "blobs" / "sha256"
        self._tmp = root / "tmp"
        self._lock = threading.Lock()
        self._index: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._flights: dict[str, _Flight] = {}
        self._reserved = 0
        self._load()

    # ---- state ----------------------------------------------------------------------------

    def _load(self) -> None:
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        found = []
        for path in self._blobs.iterdir():
            with contextlib.suppress(OSError):
                info = path.stat()
                if len(path.name) == 64 and path.is_file():
                    found.append((info.st_mtime_ns, path.name, info.st_size))
        for _, hex_digest, size in sorted(found):
            self._index[f"sha256:{hex_digest}"] = _Entry(size)
        self._metrics.cache_bytes.set(self.used_bytes)

    @property
    def used_bytes(self) -> int:
        return sum(entry.size for entry in self._index.values())

    def path(self, digest: str) -> Path:
        return self._blobs / digest.removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        with self._lock:
            return digest in self._index

    # ---- serving --------------------------------------------------------------------------

    def stream(
        self, digest: str, size: int, fetch: Fetch, offset: int = 0
    ) -> Generator[Piece, None, None]:
        """The blob's bytes from ``offset``; raises ``BlobCorrupt`` (before the last chunk)
        when the bytes do not match ``digest`` and ``size``. Send each piece before asking
        for the next: a piece read from disk is a view of a buffer the next read reuses."""
        for _ in range(8):  # a waiter whose leader failed becomes the leader itself
            with self._lock:
                entry = self._index.get(digest)
                flight = self._flights.get(digest)
                if entry is not None:
                    entry.readers += 1
                    self._index.move_to_end(digest)
                elif flight is None:
                    fits = self._reserve(size)
                    flight = _Flight() if fits else None
                    if flight is not None:
                        self._flights[digest] = flight
                    leader = True
                else:
                    leader = False
            if entry is not None:
                self._metrics.cache_hits.inc()
                yield from self._read(digest, entry, offset)
                return
            if leader:
                self._metrics.cache_misses.inc()
                if flight is None:  # larger than what the budget can free: pass through
                    yield from _verified(_counted(fetch(), self._metrics), digest, size, offset)
                    return
                yield from self._fetch(digest, size, fetch, offset, flight)
                return
            assert flight is not None
            flight.done.wait()
        raise BlobCorrupt(f"{digest}: the fetches of other requests kept failing")

    def _read(self, digest: str, entry: _Entry, offset: int) -> Iterator[Piece]:
        path = self.path(digest)
        try:
            with path.open("rb", buffering=0) as file:
                os.utime(file.fileno())  # the access order survives a restart
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                yield from _verified(_file_chunks(file, self._chunk), digest, entry.size, offset)
        except (BlobCorrupt, FileNotFoundError):
            self._metrics.cache_corrupt.inc()
            self._drop(digest)
            raise BlobCorrupt(
                f"cached {digest} is corrupt; removed, the next request refetches"
            ) from None
        finally:
            with self._lock:
                entry.readers -= 1

    def _fetch(
        self, digest: str, size: int, fetch: Fetch, offset: int, flight: _Flight
    ) -> Iterator[Piece]:
        temp = self._tmp / f"{digest.removeprefix('sha256:')}.{uuid.uuid4().hex}"
        stored = False
        try:
            with temp.open("wb") as file:
                for piece in _verified(_counted(fetch(), self._metrics), digest, size, 0, file):
                    if offset < len(piece):
                        yield piece[offset:] if offset else piece
                        offset = 0
                    else:
                        offset -= len(piece)
                # Verified (the last chunk is only yielded then); made durable after the client
                # has all its bytes, so the fsync of a large blob does not delay it.
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path(digest))
            stored = True
        finally:
            with self._lock:
                self._reserved -= size
                if stored:
                    self._index[digest] = _Entry(size)
                self._flights.pop(digest, None)
                self._metrics.cache_bytes.set(self.used_bytes)
            flight.done.set()
            if not stored:
                with contextlib.suppress(OSError):
                    temp.unlink()

    # ---- budget ---------------------------------------------------------------------------

    def _reserve(self, size: int) -> bool:
        """Makes room for ``size`` more bytes (lock held); False when it cannot."""
        if size > self.budget:
            return False
        used = self.used_bytes + self._reserved
        victims = []
        for digest, entry in self._index.items():  # least recently used first
            if used + size <= self.budget:
                break
            if entry.readers == 0:
                victims.append(digest)
                used -= entry.size
        if used + size > self.budget:
            return False
        for digest in victims:
            del self._index[digest]
            with contextlib.suppress(OSError):
                self.path(digest).unlink()
            self._metrics.evictions.inc()
        self._reserved += size
        return True

    def _drop(self, digest: str) -> None:
        with self._lock:
            entry = self._index.get(digest)
            if entry is not None and digest not in self._flights:
                del self._index[digest]
                with contextlib.suppress(OSError):
                    self.path(digest).unlink()
            self._metrics.cache_bytes.set(self.used_bytes)


def _file_chunks(file: FileIO, chunk: int) -> Iterator[memoryview]:
    """The file's bytes read into two buffers in turn, so a piece stays intact while the next
    one is read (``_verified`` holds one back) — no allocation or page fault per piece."""
    buffers = (memoryview(bytearray(chunk)), memoryview(bytearray(chunk)))
    turn = 0
    while count := file.readinto(buffers[turn]):
        yield buffers[turn][:count]
        turn ^= 1


def _counted(chunks: Iterator[bytes], metrics: DeliveryMetrics) -> Iterator[Piece]:
    for piece in chunks:
        metrics.registry_bytes.inc(len(piece))
        yield piece


def _verified(
    chunks: Iterator[Piece], digest: str, size: int, offset: int, copy: BinaryIO | None = None
) -> Iterator[Piece]:
    """The chunks from ``offset``, the last one held back until the whole stream hashed to
    ``digest`` with ``size`` bytes (also written to ``copy`` when given)."""
    hasher = hashlib.sha256()
    total = 0
    held: Piece | None = None
    for piece in chunks:
        hasher.update(piece)
        total += len(piece)
        if total > size:
            raise BlobCorrupt(f"{digest}: more than {size} bytes")
        if copy is not None:
            copy.write(piece)
        if offset >= len(piece):
            offset -= len(piece)
            continue
        if held is not None:
            yield held
        held, offset = piece[offset:], 0
    if total != size or f"sha256:{hasher.hexdigest()}" != digest:
        raise BlobCorrupt(f"{digest}: the bytes hash to sha256:{hasher.hexdigest()} ({total} B)")
    if held is not None:
        yield held
