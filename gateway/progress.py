"""Where each upload stands, written back to its record lazily.

The registry hands out a new upload location after every chunk (its ``_state`` parameter is
signed and carries the offset), and refuses a location whose offset is stale — a status query
included. So another replica can resume an upload only from the latest location, and the
record must carry it when a client switches replicas. Writing it after every chunk would be an
API write per 8 MiB; instead this book keeps the latest location in memory and writes it:

- at most once per ``interval`` (2 s) while bytes arrive, with offset and rate (``upload``),
  by the background thread (``run``), never in a request's path;
- at once when the client's connection ends or a request fails (``flush``): a client switches
  replicas only after its connection to this one broke;
- and at shutdown, after the requests in flight.

A replica that dies between writes loses its last locations; the next status query then finds
the registry session unusable and answers ``NoUpload`` (the client starts again). Writes are
compare-and-swap and monotonic: never over a record whose upload was restarted (another
location path) or stands further.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import structlog

from api.upload import SessionRecord
from controller.errors import KubeError
from gateway.records import RecordGone, RecordStore

log = structlog.get_logger("gateway")
IDLE_SECONDS = 3600.0
"""A position written and untouched this long is dropped from memory."""


def upload_id(location: str) -> str:
    """The registry upload session a location names (its path, without the signed state)."""
    return urlsplit(location).path


@dataclass
class Position:
    location: str
    """Path and query, as the record stores it."""
    offset: int
    written_offset: int
    written_at: float
    dirty: bool = False

    @property
    def upload_id(self) -> str:
        return upload_id(self.location)


class ProgressBook:
    def __init__(
        self,
        store: RecordStore,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._interval = interval
        self._clock = clock
        self._now = now
        self._positions: dict[str, Position] = {}
        self._lock = threading.Lock()

    def position(self, session: str) -> Position | None:
        with self._lock:
            return self._positions.get(session)

    def started(self, session: str, location: str) -> None:
        """A new upload at offset 0 (its record was just written)."""
        with self._lock:
            self._positions[session] = Position(location, 0, 0, self._clock())

    def advanced(self, session: str, location: str, offset: int) -> None:
        """Bytes are in the registry: remembered here, written by ``run`` (never in the
        request's path: an API write under load can take longer than a chunk)."""
        with self._lock:
            position = self._positions.get(session)
            if position is None or position.upload_id != upload_id(location):
                position = self._positions[session] = Position(location, 0, 0, self._clock())
            position.location, position.offset, position.dirty = location, offset, True

    def forget(self, session: str) -> None:
        with self._lock:
            self._positions.pop(session, None)

    def flush(self, session: str) -> None:
        """Writes the latest position when it is not written yet; failures are logged only (the
        bytes are safe in the registry; the background thread tries again). A position stays
        dirty until its write has succeeded, so a concurrent flush (the last pass at shutdown)
        never takes it for written while the write is still on its way."""
        with self._lock:
            position = self._positions.get(session)
            if position is None or not position.dirty:
                return
            snapshot = Position(**vars(position))
        try:
            self._store.update(session, lambda record: self._apply(record, snapshot))
        except RecordGone:
            self.forget(session)
            return
        except KubeError as error:
            log.warning("progress not written", session=session, error=str(error))
            return
        with self._lock:
            if position.location == snapshot.location and position.offset == snapshot.offset:
                position.dirty = False

    def flush_due(self, everything: bool = False) -> None:
        with self._lock:
            idle = self._clock() - IDLE_SECONDS
            for session in [s for s, p in self._positions.items()
                            if not p.dirty and p.written_at < idle]:  # fmt: skip
                del self._positions[session]  # abandoned: the record has its last position
            horizon = self._clock() - self._interval
            due = [s for s, p in self._positions.items()
                   if p.dirty and (everything or p.written_at <= horizon)]  # fmt: skip
        for session in due:
            self.flush(session)

    def run(self, stop: threading.Event, period: float = 0.5) -> None:
        while not stop.wait(period):
            self.flush_due()
        self.flush_due(everything=True)

    def _apply(self, record: SessionRecord, position: Position) -> SessionRecord | None:
        current = record.upload
        if record.committed is not None or current is None:
            return None
        if upload_id(current.location) != position.upload_id or current.offset > position.offset:
            return None
        elapsed = max(self._clock() - position.written_at, 1e-3)
        rate = max(0.0, (position.offset - position.written_offset) / elapsed)
        with self._lock:
            live = self._positions.get(record.session)
            if live is not None and live.upload_id == position.upload_id:
                live.written_offset, live.written_at = position.offset, self._clock()
        progress = current.model_copy(
            update={"location": position.location, "offset": position.offset,
                    "bytes_per_second": round(rate, 1), "updated_at": self._now()}
        )  # fmt: skip
        return record.model_copy(update={"upload": progress})
