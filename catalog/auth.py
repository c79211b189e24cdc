"""Who may ask: the clients' bearer tokens and the brake on guessing them.

Client tokens come from Secrets (key ``token``) re-read every ``ttl`` seconds, so a rotated
token takes effect without a restart. A presented token is compared with every known one in
constant time (over their SHA-256, so lengths leak nothing). ``FailureLimiter`` counts bad
tokens per client address in a sliding window; past the limit the client gets 429 with
``Retry-After`` until the oldest failure leaves the window.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable

TokenSource = Callable[[], list[str]]


class ClientTokens:
    def __init__(
        self, source: TokenSource, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._hashes: list[bytes] = []
        self._read_at: float | None = None

    def _known(self) -> list[bytes]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._ttl:
                tokens = [t for t in self._source() if t]
                self._hashes = [hashlib.sha256(t.encode()).digest() for t in tokens]
                self._read_at = now
            return self._hashes

    def valid(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).digest()
        matched = False
        for known in self._known():
            matched |= hmac.compare_digest(digest, known)
        return matched


class FailureLimiter:
    def __init__(
        self,
        max_failures: int = 10,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._clock = clock
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and now - times[0] >= self._window:
            times.popleft()
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait, or None when it may try."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if len(times) < self._max:
                return None
            return max(1, int(times[0] + self._window - now + 0.999))

    def fail(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            if client not in self._failures and len(self._failures) >= self._max_clients:
                # Bounded memory: forget clients whose failures all aged out, else the oldest.
                stale = [c for c, t in self._failures.items() if not self._recent(c, now)]
                for c in stale or [next(iter(self._failures))]:
                    del self._failures[c]
            times = self._recent(client, now)
            times.append(now)
            while len(times) > self._max:
                times.popleft()
            self._failures[client] = times
