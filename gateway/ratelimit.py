"""Wrong tokens per session, per replica: after ``limit`` failures within ``window`` seconds
the session answers 429 ``TooManyAttempts`` (with ``Retry-After``) to every request — right
token or not, so a guesser learns nothing — until the oldest failure leaves the window.

With 256 random bits per token the limit is not what keeps a token safe; it keeps a flood of
guesses from turning into a flood of API reads. Each replica counts alone (no shared state): N
replicas allow N times ``limit`` guesses a minute. The table is bounded (``max_keys``): past it the
oldest session's count is dropped.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class AttemptLimiter:
    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until ``key`` may try again; None when it may now."""
        with self._lock:
            failures = self._recent(key)
            if failures is None or len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window - self._clock()))

    def failed(self, key: str) -> None:
        with self._lock:
            failures = self._recent(key)
            if failures is None:
                failures = self._failures[key] = deque(maxlen=self.limit)
                while len(self._failures) > self._max_keys:
                    self._failures.popitem(last=False)
            failures.append(self._clock())
            self._failures.move_to_end(key)

    def _recent(self, key: str) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self._clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures
