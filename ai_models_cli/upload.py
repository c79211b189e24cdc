"""The resumable upload: ``HEAD`` → resume or ``POST`` → ``PATCH`` 8 MiB at a time → commit.

The gateway keeps the committed offset (in the registry), so the CLI keeps none: each run asks
``HEAD`` where the upload stands and, when the upload in flight has the same file name and
length, goes on from there. The bytes before that offset are read (or generated) again to hash
them — the commit carries the sha256 of the whole — but not sent. A broken connection, a 429 or
a 5xx is retried with exponential backoff, asking ``HEAD`` again each time; a permanent error
(401, 410, 413, 400) stops at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ai_models_cli.errors import CliError, GatewayError, GatewayUnreachable, PayloadChanged
from ai_models_cli.gateway import GatewayClient
from ai_models_cli.payload import Payload
from api.upload import CommitResult

CHUNK_BYTES = 8 << 20
"""One PATCH: the gateway holds at most one such chunk in memory."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    """Consecutive failures (without progress in between) before giving up."""
    base_seconds: float = 1.0
    max_seconds: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_seconds, self.base_seconds * 2 ** (failures - 1)))


class Progress(Protocol):
    def start(self, total: int, at: int) -> None: ...

    def update(self, done: int) -> None: ...

    def note(self, message: str) -> None: ...

    def finish(self) -> None: ...


class Cursor:
    """A position in the payload: the bytes before ``pos`` are hashed, the next chunk is kept
    in memory until the gateway confirms it. Going back regenerates the payload from byte 0."""

    def __init__(self, payload: Payload, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._payload = payload
        self._chunk = chunk_bytes
        self.generations = 0
        """How many times the payload was read from the start (tests: resume needs one)."""
        self._restart()

    def _restart(self) -> None:
        self._blocks: Iterator[bytes] = iter(self._payload.blocks())
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self.pos = 0
        self.generations += 1

    def _fill(self, wanted: int) -> None:
        while len(self._buffer) < wanted:
            block = next(self._blocks, None)
            if block is None:
                return
            self._buffer += block

    def peek(self) -> bytes:
        """The next chunk (fewer bytes at the end)."""
        self._fill(self._chunk)
        return bytes(self._buffer[: self._chunk])

    def seek(self, offset: int) -> None:
        """Hash forward to ``offset`` (after regenerating from 0 when it lies behind)."""
        if offset < self.pos:
            self._restart()
        while self.pos < offset:
            self._fill(min(self._chunk, offset - self.pos))
            take = min(len(self._buffer), offset - self.pos)
            if take == 0:
                raise PayloadChanged(f"{self._payload.filename} ended before byte {offset:,}")
            self._hash.update(self._buffer[:take])
            del self._buffer[:take]
            self.pos += take

    def sha256(self) -> str:
        """The whole payload's sha256, once ``pos`` is at its end and nothing follows."""
        self._fill(1)
        if self.pos != self._payload.size or self._buffer:
            raise PayloadChanged(f"{self._payload.filename} is not {self._payload.size:,} bytes")
        return self._hash.hexdigest()


@dataclass(frozen=True)
class Outcome:
    result: CommitResult | None
    """None when the session already held a committed upload (``AlreadyCommitted``)."""
    resumed_at: int
    sent: int
    """Bytes of this run's successful PATCH requests."""


def _transient(error: CliError) -> bool:
    return isinstance(error, GatewayUnreachable) or (
        isinstance(error, GatewayError) and error.transient
    )


class Uploader:
    """One run of the upload of ``payload`` into the session ``client`` talks to."""

    def __init__(
        self,
        client: GatewayClient,
        payload: Payload,
        progress: Progress,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._client = client
        self._payload = payload
        self._progress = progress
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self.cursor = Cursor(payload, chunk_bytes)
        self.resumed_at: int | None = None
        self.sent = 0
        self.confirmed = 0
        """The last offset the gateway reported: what a re-run resumes from."""

    def _locate(self) -> int:
        """Where to go on: the upload in flight when it is this payload's, else a new one."""
        state = self._client.head()
        size, name = self._payload.size, self._payload.filename
        if state and (state.filename, state.length) == (name, size) and state.offset <= size:
            return state.offset
        return self._client.start(name, size)

    def run(self) -> Outcome:
        failures = 0
        known: int | None = None
        committing = False
        try:
            while True:
                try:
                    if known is None:
                        known = self._locate()
                        if self.resumed_at is None:
                            self.resumed_at = known
                            self._progress.start(self._payload.size, known)
                    self.confirmed = known
                    self.cursor.seek(known)
                    self._progress.update(known)
                    if known == self._payload.size:
                        committing = True
                        return self._outcome(self._commit())
                    data = self.cursor.peek()
                    known = self._client.append(known, data)
                    self.sent += len(data)
                    failures = 0
                except GatewayError as error:
                    if error.code == "OffsetMismatch" and error.offset is not None:
                        known = error.offset
                        continue
                    if error.code == "AlreadyCommitted" and (committing or known is None):
                        return self._outcome(None)
                    failures = self._back_off(error, failures)
                    known = None
                except GatewayUnreachable as error:
                    failures = self._back_off(error, failures)
                    known = None
        finally:
            self._progress.finish()

    def _commit(self) -> CommitResult:
        sha256 = self.cursor.sha256()
        result = self._client.commit(sha256, self._payload.size)
        if result.digest != f"sha256:{sha256}":
            raise GatewayError(
                400, "DigestMismatch", f"the gateway stored {result.digest}, not sha256:{sha256}"
            )
        return result

    def _outcome(self, result: CommitResult | None) -> Outcome:
        return Outcome(result, self.resumed_at or 0, self.sent)

    def _back_off(self, error: CliError, failures: int) -> int:
        if not _transient(error) or failures >= self._policy.attempts:
            raise error
        failures += 1
        delay = self._policy.delay(failures)
        if isinstance(error, GatewayError) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self._policy.max_seconds * 4))
        self._progress.note(
            f"{error}; retrying in {delay:.0f} s ({failures}/{self._policy.attempts})"
        )
        self._sleep(delay)
        return failures
