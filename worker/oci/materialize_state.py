"""What ``materialize`` already wrote: an append-only journal, ``.ai-models-materialized.json``.

One JSON line per completed layer: ``{"path", "digest", "files": {path: [size, mtimeNs]}}`` (a
raw layer has one file, a tar layer its members). A re-run trusts a layer whose files all still
have the recorded size and mtime, without hashing them again. Recording is O(1): lines are
buffered and appended every ``FLUSH_EVERY`` records or ``FLUSH_SECONDS`` (and when closed). The
files themselves are not ``fsync``ed one by one (4 ms each here: 8,000 small files would spend
30 s in it); instead a flush first makes the whole file system durable (``syncfs`` on the
directory), then appends and syncs the journal — so a record never describes bytes a crash
could still lose, and what a crash does lose is merely hashed (or fetched) again. The journal is
compacted (temp file + rename) when loading finds it mostly superseded lines. It sits in a
directory the workload shares: it is read bounded, a torn or foreign line is ignored, and it is
opened only through ``SafeDirectory``.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.oci.safe_fs import SafeDirectory

STATE_FILE = ".ai-models-materialized.json"
STATE_TEMP = STATE_FILE + ".tmp"
MAX_STATE_BYTES = 64 << 20
FLUSH_EVERY = 512
FLUSH_SECONDS = 2.0


def _syncfs_function() -> Callable[[int], None]:
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # pragma: no cover - not glibc/musl on Linux
        return lambda _fd: os.sync()

    def call(fd: int) -> None:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return call


syncfs = _syncfs_function()
"""Flushes the file system holding ``fd`` (Linux ``syncfs(2)``): one call for many files."""


@dataclass(frozen=True)
class LayerRecord:
    digest: str
    files: dict[str, tuple[int, int]]
    """file path → (size, mtime in ns)."""


def _parse_line(line: bytes) -> tuple[str, LayerRecord] | None:
    try:
        entry = json.loads(line)
        path, digest, files = entry["path"], entry["digest"], entry["files"]
        parsed = {str(name): (int(size), int(mtime)) for name, (size, mtime) in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(path, str) or not isinstance(digest, str):
        return None
    return path, LayerRecord(digest, parsed)


class StateJournal:
    def __init__(self, directory: SafeDirectory) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._flushed_at = time.monotonic()
        self.records, lines = self._load()
        if lines > 2 * len(self.records) + 1024:
            self._compact()
            self._pending.clear()
        self._fd = directory.open_file(
            directory.fd, STATE_FILE, STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND
        )

    def _load(self) -> tuple[dict[str, LayerRecord], int]:
        if self._dir.lstat(self._dir.fd, STATE_FILE, STATE_FILE) is None:
            return {}, 0
        fd = self._dir.open_file(self._dir.fd, STATE_FILE, STATE_FILE, os.O_RDONLY)
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_STATE_BYTES + 1)
        if len(data) > MAX_STATE_BYTES:
            return {}, MAX_STATE_BYTES  # compacted away: its files are hashed once more
        if data and not data.endswith(b"\n"):  # a torn last line, or the old one-object format
            self._pending.append(b"\n")
        records: dict[str, LayerRecord] = {}
        lines = data.split(b"\n")
        for line in lines:
            if parsed := _parse_line(line):
                records[parsed[0]] = parsed[1]
        return records, len(lines)

    def _compact(self) -> None:
        text = b"".join(_line(path, record) for path, record in self.records.items())
        if self._dir.lstat(self._dir.fd, STATE_TEMP, STATE_TEMP) is not None:
            self._dir.remove(self._dir.fd, STATE_TEMP)  # a leftover of a crash: a regular file
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = self._dir.open_file(self._dir.fd, STATE_TEMP, STATE_TEMP, flags)
        with os.fdopen(fd, "wb") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        self._dir.place(self._dir.fd, STATE_TEMP, self._dir.fd, STATE_FILE, STATE_FILE)

    def is_current(self, path: str, digest: str, stats: dict[str, tuple[int, int]]) -> bool:
        record = self.records.get(path)
        return record is not None and record.digest == digest and record.files == stats

    def record(self, path: str, digest: str, files: dict[str, tuple[int, int]]) -> None:
        record = LayerRecord(digest, files)
        with self._lock:
            self.records[path] = record
            self._pending.append(_line(path, record))
            due = time.monotonic() - self._flushed_at >= FLUSH_SECONDS
            if len(self._pending) >= FLUSH_EVERY or due:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            syncfs(self._dir.fd)  # the recorded files' bytes first, then the records
            data = b"".join(self._pending)
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
            self._pending.clear()
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        with self._lock:
            try:
                self._flush()
            finally:
                os.close(self._fd)


def _line(path: str, record: LayerRecord) -> bytes:
    entry: dict[str, Any] = {
        "path": path,
        "digest": record.digest,
        "files": {name: list(value) for name, value in record.files.items()},
    }
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
