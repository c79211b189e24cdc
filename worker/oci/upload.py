"""Resumable blob uploads: POST a session, PATCH the bytes, PUT ``?digest=``.

Every blob streams: a PATCH's body (``Transfer-Encoding: chunked``, the streamed upload docker
clients use) is sent as the source yields it, so the registry does its per-request work (sync,
bookkeeping) once per request instead of once per chunk. A source that fails ends the body
where it failed: the request completes and the session stays resumable from there.

- **A local file** (``streamed=True``, cheap to read again) is read in the uploading thread.
- **A download** (Hub, Ollama, a registry) is read ahead by a thread of its own
  (``read_ahead.py``), so the download goes on while the upload sends.

Either goes in one PATCH, unless the caller asks for PATCHes of ``segment_size`` bytes (each
answered one a point to resume from). One PATCH is the default: at the end of each PATCH
docker-registry syncs what it wrote and saves its hash state before it answers, and the upload
waits for that; 64 MiB segments made a 1 GiB download 30-40% slower (docs/performance.md).

What a worker killed mid-request costs: docker-registry cancels a session whose size is not
the offset its location names, and an interrupted PATCH (a killed worker, a broken connection)
leaves such a size behind, whatever the body's framing. The next run finds the session gone
(``GET`` answers 404) and starts the blob over. Only a body that *ends* (a failing source, a
cancelled transfer) keeps the session. docs/oci.md has the measured cases.

Memory is one piece of the source per upload, plus ``READ_AHEAD_BYTES`` for a download,
whatever the file size; a blob of at most one chunk (``RegistrySettings.chunk_size``) whose
digest is known goes in the PUT itself (two requests, no PATCH).

The registry answers the POST and every PATCH with the session's location; for a blob whose
digest is known in advance that location is remembered (in memory and, when a state file is
given, on disk), so an upload that stopped (the source stream broke, the transfer was
cancelled) resumes where the registry's committed offset (``GET`` of the session: ``Range:
0-<last>``) says, with a new PATCH from there, and the source is reopened at that offset:
committed bytes are neither read from the source nor sent again.

A blob whose digest is not known is hashed while it streams; its upload can resume within one
call only while the hash covers exactly the committed bytes, and starts over otherwise (a hash
state cannot be rebuilt without the prefix).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from oci.errors import Refused, RegistryError, Unavailable
from oci.registry import RegistryClient
from worker.errors import RegistryUnavailable, is_out_of_space
from worker.oci.content import ByteCounter, ChunkOpener, DigestMismatch
from worker.oci.read_ahead import ReadAhead

# The registry's answers when a PATCH does not fit the session any more (a partial write of a
# failed request moved the offset, or the registry dropped the session).
_SESSION_LOST_STATUSES = frozenset({400, 404, 416})
_PIECE = 1 << 20
READ_AHEAD_BYTES = 4 << 20
"""How far a download's reading thread may run ahead of its upload."""
log = structlog.get_logger("worker")


class UploadSessions:
    """Open upload sessions by blob digest, optionally kept in a JSON file across processes."""

    def __init__(self, state_file: Path | None = None) -> None:
        self._file = state_file
        self._lock = threading.Lock()
        self._locations: dict[str, str] = {}
        if state_file is not None and state_file.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(state_file.read_text())
                self._locations = {str(k): str(v) for k, v in dict(loaded).items()}

    def get(self, digest: str) -> str | None:
        with self._lock:
            return self._locations.get(digest)

    def set(self, digest: str, location: str) -> None:
        with self._lock:
            self._locations[digest] = location
            self._save()

    def drop(self, digest: str) -> None:
        with self._lock:
            if self._locations.pop(digest, None) is not None:
                self._save()

    def _save(self) -> None:
        if self._file is None:
            return
        temporary = self._file.with_name(self._file.name + ".tmp")
        try:
            temporary.write_text(json.dumps(self._locations, sort_keys=True))
            os.replace(temporary, self._file)
        except OSError as error:
            if not is_out_of_space(error):
                raise
            # The file only spares a restarted pod some re-sent bytes: a full workspace must not
            # fail an upload that the registry can still take.
            log.warning("workspace full: upload sessions are not kept", file=str(self._file))
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            self._file = None


class _StreamBrokenError(Exception):
    """The streaming PATCH did not complete (connection lost, 5xx, token renewed)."""


@dataclass
class _Progress:
    location: str
    offset: int
    """Bytes handed to the registry (committed ones, once the request succeeded)."""
    hasher: hashlib._Hash | None = field(default=None)
    source_error: BaseException | None = field(default=None)
    """What broke the source mid-request (the HTTP library reports it as a lost connection)."""


class BlobUpload:
    """One blob into one repository."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        sessions: UploadSessions,
        open_chunks: ChunkOpener,
        size: int,
        digest: str | None,
        *,
        streamed: bool = False,
        segment_size: int | None = None,
    ) -> None:
        """``streamed``: the source is cheap to read again (a local file), so it is read in
        this thread; otherwise (a download) a thread reads it ahead. ``segment_size``: bytes
        per PATCH (the last one shorter); None, one PATCH (see the module's docstring)."""
        self._client = client
        self._repository = repository
        self._sessions = sessions
        self._open = open_chunks
        self._size = size
        self._digest = digest
        self._streamed = streamed
        self._segment = segment_size

    def run(self, on_bytes: ByteCounter) -> str:
        state = self._resume_or_start(on_bytes)
        for recovery in range(self._client.settings.attempts):
            try:
                return self._attempt(state, on_bytes)
            except Refused as refusal:
                if refusal.status not in _SESSION_LOST_STATUSES:
                    raise
            except _StreamBrokenError:
                pass  # what the registry committed decides where to go on
            state = self._recover(state, recovery)
        raise RegistryUnavailable(
            f"upload to {self._repository} lost its connection or session "
            f"{self._client.settings.attempts} times"
        )

    def _attempt(self, state: _Progress, on_bytes: ByteCounter) -> str:
        if self._digest is not None and state.offset == 0 and self._fits_in_put():
            return self._put_whole(state, self._digest, on_bytes)
        self._stream_from(state, on_bytes)
        return self._finish(state)

    def _fits_in_put(self) -> bool:
        return 0 < self._size <= self._client.settings.chunk_size

    def _resume_or_start(self, on_bytes: ByteCounter) -> _Progress:
        known = self._sessions.get(self._digest) if self._digest else None
        if known is not None:
            offset = _held(self._client.upload_offset(self._repository, known))
            if offset is not None and offset <= self._size:
                on_bytes(offset)  # already in the registry: counts as done
                return _Progress(known, offset)
        return self._fresh()

    def _fresh(self) -> _Progress:
        location = self._client.start_upload(self._repository)
        self._remember(location)
        return _Progress(location, 0, None if self._digest else hashlib.sha256())

    def _recover(self, state: _Progress, recovery: int) -> _Progress:
        committed = _held(self._client.upload_offset(self._repository, state.location))
        if committed is None or (state.hasher is not None and committed != state.offset):
            self._sessions.drop(self._digest or "")
            return self._fresh()
        # Repeated losses back off like any other registry failure.
        self._client.pause(self._client.settings.backoff(recovery + 1))
        state.offset = committed
        return state

    def _put_whole(self, state: _Progress, digest: str, on_bytes: ByteCounter) -> str:
        """A small blob: its bytes go in the PUT that closes the session."""
        data = b"".join(self._checked(state, self._open(state.offset)))
        if state.source_error is not None:
            raise state.source_error
        if len(data) != self._size:
            raise DigestMismatch(str(self._size), str(len(data)), "size")
        self._close(state.location, digest, data)
        on_bytes(len(data))
        return digest

    def _stream_from(self, state: _Progress, on_bytes: ByteCounter) -> None:
        if state.offset < self._size:
            state.source_error = None
            chunks: Iterable[bytes] = self._open(state.offset)
            if not self._streamed:
                chunks = ReadAhead(chunks, READ_AHEAD_BYTES, name="download")
            checked = self._checked(state, chunks)
            pieces = self._counted(checked, on_bytes)
            segment = self._segment or self._size
            try:
                while (body := _next_segment(pieces, segment)) is not None:
                    self._patch(state, body)
            finally:
                checked.close()  # stops the source (and a reading thread) on any way out
            if state.source_error is not None:
                raise state.source_error
        if state.offset != self._size:
            raise DigestMismatch(str(self._size), str(state.offset), "size")

    def _patch(self, state: _Progress, body: Iterator[memoryview]) -> None:
        """One streamed PATCH; its answer is the next point to resume from."""
        try:
            location = self._client.upload_stream(self._repository, state.location, body)
        except RegistryError as error:
            if state.source_error is not None:
                raise state.source_error from None
            if isinstance(error, Unavailable):
                raise _StreamBrokenError() from error
            raise
        state.location = location
        self._remember(location)

    def _checked(self, state: _Progress, chunks: Iterable[bytes]) -> Generator[bytes, None, None]:
        """``chunks`` (the source's bytes from ``state.offset``), hashed when the digest is
        unknown, and no more than the blob announces. A failing source ends the body where it
        failed, so the request completes with what was read and the session stays resumable
        from there; the failure is raised once the registry has answered."""
        try:
            for chunk in chunks:
                if state.offset + len(chunk) > self._size:
                    raise DigestMismatch(str(self._size), f"more than {self._size}", "size")
                if state.hasher is not None:
                    state.hasher.update(chunk)
                state.offset += len(chunk)
                yield chunk
        except Exception as error:  # noqa: BLE001 - raised again after the registry's answer
            state.source_error = error
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    @staticmethod
    def _counted(chunks: Iterator[bytes], on_bytes: ByteCounter) -> Iterator[memoryview]:
        """Progress moves while the one request streams: each piece counts as it goes to the
        connection (a piece lost with a broken connection is counted again when resent).
        Pieces are views of at most ``_PIECE`` bytes: the HTTP library copies each one into
        its chunked framing, and a small copy stays in the reused heap."""
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), _PIECE):
                piece = view[start : start + _PIECE]
                on_bytes(len(piece))
                yield piece

    def _finish(self, state: _Progress) -> str:
        digest = self._digest
        if digest is None:
            assert state.hasher is not None
            digest = "sha256:" + state.hasher.hexdigest()
        self._close(state.location, digest, b"")
        return digest

    def _close(self, location: str, digest: str, data: bytes) -> None:
        try:
            self._client.finish_upload(self._repository, location, digest, data)
        except Refused as refusal:
            if "DIGEST_INVALID" in refusal.codes or "SIZE_INVALID" in refusal.codes:
                self._sessions.drop(digest)
                raise DigestMismatch(digest, "other content (the registry refused it)") from None
            # A lost answer to a PUT that did land: the blob is there, all is well.
            if self._client.blob_size(self._repository, digest) != self._size:
                raise
        self._sessions.drop(digest)

    def _remember(self, location: str) -> None:
        if self._digest is not None:
            self._sessions.set(self._digest, location)


def _next_segment(pieces: Iterator[memoryview], size: int) -> Iterator[memoryview] | None:
    """The body of the next PATCH: pieces up to at least ``size`` bytes (a piece is never
    split); None when the source has nothing more (no empty PATCH is sent)."""
    first = next(pieces, None)
    if first is None:
        return None

    def body() -> Iterator[memoryview]:
        sent = 0
        for piece in itertools.chain((first,), pieces):
            yield piece
            sent += len(piece)
            if sent >= size:
                return

    return body()


def _held(reported: int | None) -> int | None:
    """What a session holds. docker-registry 2.8 answers the status of an empty session with
    ``Range: 0-0``, as it would a 1-byte one, which the client reads as 1. This driver never
    leaves exactly one byte in a session (a blob that small goes in the PUT; sessions grow by
    whole reads of the source), so 1 means empty."""
    return 0 if reported == 1 else reported
