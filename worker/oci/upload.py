"""Chunked, resumable blob uploads: POST a session, PATCH one chunk at a time, PUT ``?digest=``.

Memory is one chunk (``RegistrySettings.chunk_size``) per upload, whatever the file size. The
registry answers every PATCH with the session's next location; for a blob whose digest is known
in advance that location is remembered (in memory and, when a state file is given, on disk), so
an upload that died — the source stream broke, the pod was killed — resumes where the registry's
committed offset (``GET`` of the session: ``Range: 0-<last>``) says, and the source is reopened
at that offset: committed bytes are neither downloaded nor sent again.

A blob whose digest is not known is hashed while it streams; its upload can resume within one
call (after a failed PATCH) only while the hash covers exactly the committed bytes, and starts
over otherwise — a hash state cannot be rebuilt without the prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from worker.errors import RegistryUnavailable, is_out_of_space
from worker.oci.content import ByteCounter, ChunkOpener, DigestMismatch, rechunk
from worker.oci.registry import RegistryClient, RegistryRefusal

# The registry's answers when a PATCH does not fit the session any more (a partial write of a
# failed request moved the offset, or the registry dropped the session).
_SESSION_LOST_STATUSES = frozenset({400, 404, 416})
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


@dataclass
class _Progress:
    location: str
    offset: int
    hasher: hashlib._Hash | None = field(default=None)


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
    ) -> None:
        self._client = client
        self._repository = repository
        self._sessions = sessions
        self._open = open_chunks
        self._size = size
        self._digest = digest

    def run(self, on_bytes: ByteCounter) -> str:
        state = self._resume_or_start(on_bytes)
        for recovery in range(self._client.settings.attempts):
            try:
                self._send_from(state, on_bytes)
                break
            except RegistryRefusal as refusal:
                if refusal.status not in _SESSION_LOST_STATUSES:
                    raise
                state = self._recover(state, recovery)
        else:
            raise RegistryUnavailable(
                f"upload to {self._repository} lost its session "
                f"{self._client.settings.attempts} times"
            )
        return self._finish(state)

    def _resume_or_start(self, on_bytes: ByteCounter) -> _Progress:
        known = self._sessions.get(self._digest) if self._digest else None
        if known is not None:
            offset = self._client.upload_offset(self._repository, known)
            if offset is not None and offset <= self._size:
                on_bytes(offset)  # already in the registry: counts as done
                return _Progress(known, offset)
        return self._fresh()

    def _fresh(self) -> _Progress:
        location = self._client.start_upload(self._repository)
        self._remember(location)
        return _Progress(location, 0, None if self._digest else hashlib.sha256())

    def _recover(self, state: _Progress, recovery: int) -> _Progress:
        committed = self._client.upload_offset(self._repository, state.location)
        if committed is None or (state.hasher is not None and committed != state.offset):
            self._sessions.drop(self._digest or "")
            return self._fresh()
        # Repeated session losses back off like any other registry failure.
        self._client.pause(self._client.settings.backoff(recovery + 1))
        state.offset = committed
        return state

    def _send_from(self, state: _Progress, on_bytes: ByteCounter) -> None:
        chunks: Iterable[bytes] = self._open(state.offset)
        try:
            for chunk in rechunk(chunks, self._client.settings.chunk_size):
                if state.offset + len(chunk) > self._size:
                    raise DigestMismatch(str(self._size), f"more than {self._size}", "size")
                state.location = self._client.upload_chunk(
                    self._repository, state.location, chunk, state.offset
                )
                state.offset += len(chunk)
                if state.hasher is not None:
                    state.hasher.update(chunk)
                self._remember(state.location)
                on_bytes(len(chunk))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if state.offset != self._size:
            raise DigestMismatch(str(self._size), str(state.offset), "size")

    def _finish(self, state: _Progress) -> str:
        digest = self._digest
        if digest is None:
            assert state.hasher is not None
            digest = "sha256:" + state.hasher.hexdigest()
        try:
            self._client.finish_upload(self._repository, state.location, digest)
        except RegistryRefusal as refusal:
            if "DIGEST_INVALID" in refusal.codes or "SIZE_INVALID" in refusal.codes:
                self._sessions.drop(digest)
                raise DigestMismatch(digest, "other content (the registry refused it)") from None
            # A lost answer to a PUT that did land: the blob is there, all is well.
            if self._client.blob_size(self._repository, digest) != self._size:
                raise
        self._sessions.drop(digest)
        return digest

    def _remember(self, location: str) -> None:
        if self._digest is not None:
            self._sessions.set(self._digest, location)
