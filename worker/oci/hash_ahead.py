"""The hash passes of a local plan's large files, run ahead of their uploads.

A local file is hashed before it is sent (``publish.py``: the digest decides whether the target
already has it). Done in the upload slot itself, a file that got a slot late (the fourth of four
shards with three slots) was hashed only when the slot freed, with little else to overlap, and
then sent alone at the end of the push (4 GiB, load 5: a 5.6 s hash pass, then 8.8 s alone).
Here up to ``slots`` threads hash the files in the order their uploads start: the first ones
at once, as before, while their uploads wait for them, and the next one while the earlier ones
are sent, so a slot that frees finds its digest ready.

How far ahead: a pass starts only while the passes running or done but not yet taken number at
most the uploads waiting for a digest. With every slot sending, that is one file ahead, so a
file is read for its hash shortly before it is read again to be sent: from the page cache, for
a model larger than the memory too. (One hashing thread was tried first: under load its passes,
one at a time, came later than the slots' own had.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

from worker.plan import PlannedFile

_POLL_SECONDS = 0.1
"""How often a waiting hash pass looks whether the transfer was stopped."""


class HashAhead:
    def __init__(
        self,
        files: Iterable[PlannedFile],
        hash_one: Callable[[PlannedFile], str],
        *,
        slots: int,
        stop: threading.Event,
        cancelled: Callable[[str], BaseException],
    ) -> None:
        """``hash_one``: the digest of one file (it stops by itself when ``stop`` is set).
        ``cancelled``: the error for a file whose hash did not run because the transfer
        stopped."""
        self._hash_one = hash_one
        self._stop = stop
        self._cancelled = cancelled
        self._room = threading.Condition()
        self._waiting = 0
        """Uploads inside ``digest``."""
        self._ahead = 0
        """Passes running, or done and not yet taken."""
        self._closing = False
        self._started = 0
        """Passes started: they start in the order given, whichever thread is free."""
        self._pool = ThreadPoolExecutor(max_workers=max(1, slots), thread_name_prefix="hash")
        self._futures: dict[str, Future[str]] = {
            f.path: self._pool.submit(self._hash_when_room, f, turn) for turn, f in enumerate(files)
        }

    def __contains__(self, planned: PlannedFile) -> bool:
        return planned.path in self._futures

    def digest(self, planned: PlannedFile) -> str:
        """The file's digest, waiting for its hash pass; lets the next pass start."""
        with self._room:
            self._waiting += 1
            self._room.notify_all()
        try:
            return self._futures[planned.path].result()
        except CancelledError:
            raise self._cancelled(planned.path) from None
        finally:
            with self._room:
                self._waiting -= 1
                self._ahead -= 1
                self._room.notify_all()

    def close(self) -> None:
        """Waits for the threads (a stopped transfer ends a hash pass at its next piece) and
        drops the passes not started, also those waiting for room: a digest no upload takes
        any more (a failed transfer) must not keep a thread waiting for ever."""
        with self._room:
            self._closing = True
            self._room.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _hash_when_room(self, planned: PlannedFile, turn: int) -> str:
        with self._room:
            while turn != self._started or self._ahead > self._waiting:
                if self._stop.is_set() or self._closing:
                    raise self._cancelled(planned.path)
                self._room.wait(_POLL_SECONDS)
            self._started += 1
            self._ahead += 1
            self._room.notify_all()
        return self._hash_one(planned)
