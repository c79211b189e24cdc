"""A de-duplicating, rate-limited work queue of object keys (the client-go design, in small).

- a key waiting in the queue is queued once, however many events name it;
- a key being processed is never handed to a second worker; events for it during processing
  mark it dirty and it is queued again when the first worker finishes;
- ``add_after`` schedules a key for later (requeue-after, or backoff after an error);
- per-key exponential backoff: ``retry`` delays base·2ⁿ up to a cap, ``forget`` resets it;
  ``retry_slowly`` waits the cap at once (a failure a quick retry cannot fix, such as RBAC).

Time comes from an injectable clock so tests run without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):  # noqa: N818 - a signal, not a failure
    """The queue was shut down; workers stop."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_delay
        self._max = max_delay
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._later: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._shutdown = False

    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._later, (self._clock() + delay, next(self._seq), key))
            self._cond.notify()

    def retry(self, key: K) -> float:
        """Schedules the key after its next backoff delay; returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = float(min(self._base * (2**failures), self._max))
        self.add_after(key, delay)
        return delay

    def retry_slowly(self, key: K) -> float:
        """Schedules the key after the longest backoff delay (counting a failure); returns it."""
        with self._cond:
            self._failures[key] = self._failures.get(key, 0) + 1
        self.add_after(key, self._max)
        return self._max

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def _promote_due_locked(self) -> float | None:
        """Moves due delayed keys into the queue; returns seconds until the next one."""
        now = self._clock()
        while self._later and self._later[0][0] <= now:
            _, _, key = heapq.heappop(self._later)
            self._add_locked(key)
        return self._later[0][0] - now if self._later else None

    def get(self, timeout: float | None = None) -> K | None:
        """The next key to process (blocking), or ``None`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    raise ShutDown
                wait = self._promote_due_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)

    def poke(self) -> None:
        """Wakes waiting workers (after a fake clock moved)."""
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._later)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
