"""The operations of an upload session, between a checked record and the registry.

Every byte goes to the registry's chunked upload of the session's staging repository: each
client request becomes one registry PATCH (a segment of up to 64 MiB for a whole-file PUT) whose
body streams as the client's pieces (1 MiB) arrive, so the client, the gateway and the registry
work at once. When the client breaks off, or passes a limit, the PATCH is ended there cleanly —
the registry keeps what it got — never cut: a PATCH cut short leaves docker-registry's upload
session unusable. The offset clients see is the registry's. The location of the registry upload
is the session's shared state: this replica's latest (``progress``) when it is ahead, else the
record's. When a location no longer answers (another replica went on with the upload), the
record is read afresh for up to ``settle_seconds``, the time a replica takes to write its last
location back; after that the upload is lost and the answer is ``NoUpload``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urljoin, urlsplit

from api.upload import (
    HEADER_UPLOAD_OFFSET,
    CommitRequest,
    CommitResult,
    SessionRecord,
    UploadCommitted,
    UploadProgress,
)
from gateway.body import Body
from gateway.errors import ClientGone, Refusal
from gateway.progress import ProgressBook, upload_id
from gateway.records import RecordStore
from gateway.wire import Claim
from oci.errors import OciError, Refused
from oci.registry import RegistryClient


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class Standing:
    """Where an upload stands, as the registry confirmed it."""

    location: str
    offset: int
    progress: UploadProgress


def check_open(record: SessionRecord, now: datetime) -> None:
    if record.committed is not None:
        raise Refusal("AlreadyCommitted", f"this session is committed ({record.committed.digest})")
    if record.expired(now):
        raise Refusal("UploadExpired", f"this session expired at {record.expires_at.isoformat()}")


class Uploads:
    def __init__(
        self,
        registry: RegistryClient,
        store: RecordStore,
        book: ProgressBook,
        piece_size: int,
        segment_size: int,
        settle_seconds: float = 3.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.store = store
        self.book = book
        self.piece_size = piece_size
        """Bytes read from the client at a time: the memory of a request."""
        self.segment_size = segment_size
        """Bytes per registry PATCH at most (a client's 8 MiB request is one PATCH)."""
        self.now = now
        self._settle = settle_seconds
        self._sleep = sleep

    # ---- the operations -----------------------------------------------------------------

    def put(
        self, record: SessionRecord, filename: str, sha256: str | None, body: Body
    ) -> CommitResult:
        """The whole file in one request: streamed, hashed here, committed."""
        check_open(record, self.now())
        self._limit(body, record, 0, None)
        body.check_length()
        location = self.start(record, filename, body.length)
        hasher = hashlib.sha256()
        location, offset = self._stream(record, location, 0, body, hasher)
        digest = hasher.hexdigest()
        if sha256 is not None and sha256 != digest:
            self._abandon(record, location)
            raise Refusal("DigestMismatch", f"the body's sha256 is {digest}, not {sha256}")
        return self._finish(record, location, digest, offset, filename)

    def start(self, record: SessionRecord, filename: str, declared: int | None) -> str:
        """A new registry upload session (any previous one abandoned); its location."""
        check_open(record, self.now())
        if declared is not None and declared > record.size_limit_bytes:
            raise _too_large(record, "Upload-Length")
        previous = record.upload
        location = _relative(self.registry.start_upload(record.staging_repository))
        progress = UploadProgress(
            filename=filename, declared_size=declared, location=location, updated_at=self.now()
        )

        def change(current: SessionRecord) -> SessionRecord:
            check_open(current, self.now())
            return current.model_copy(update={"upload": progress})

        self.store.update(record.session, change)
        self.book.started(record.session, location)
        if previous is not None:
            self._cancel(record, previous.location)
        return location

    def status(self, record: SessionRecord) -> Standing:
        check_open(record, self.now())
        return self._locate(record, fast=False)

    def append(self, record: SessionRecord, claim: Claim, body: Body) -> int:
        check_open(record, self.now())
        standing = self._locate(record, fast=True, expected=claim.offset)
        if claim.offset != standing.offset:
            what = "a gap" if claim.offset > standing.offset else "an overlap"
            raise Refusal(
                "OffsetMismatch",
                f"the upload stands at {standing.offset} bytes; this PATCH starts at "
                f"{claim.offset} ({what}): send from {standing.offset}",
                {HEADER_UPLOAD_OFFSET: str(standing.offset)},
            )
        if claim.total is not None and claim.total > record.size_limit_bytes:
            raise _too_large(record, "Content-Range")
        self._limit(body, record, standing.offset, standing.progress.declared_size)
        body.check_length()
        return self._stream(record, standing.location, standing.offset, body)[1]

    def commit(self, record: SessionRecord, request: CommitRequest) -> CommitResult:
        check_open(record, self.now())
        standing = self._locate(record, fast=False)
        if request.size != standing.offset:
            raise Refusal(
                "OffsetMismatch",
                f"the registry holds {standing.offset} bytes of this upload; the commit names "
                f"{request.size}",
                {HEADER_UPLOAD_OFFSET: str(standing.offset)},
            )
        return self._finish(
            record, standing.location, request.sha256, request.size, standing.progress.filename
        )

    # ---- the registry -------------------------------------------------------------------

    def _stream(
        self,
        record: SessionRecord,
        location: str,
        offset: int,
        body: Body,
        hasher: Hasher | None = None,
    ) -> tuple[str, int]:
        """The body into registry PATCHes of up to ``segment_size`` bytes, each streamed as
        the client's pieces arrive; the new location and offset."""
        pieces = body.chunks(self.piece_size)
        while True:
            first = next(pieces, None)  # a failure here: nothing was sent
            if first is None:
                return location, offset
            location, sent, failure = self._segment(record, location, first, pieces, hasher)
            offset += sent
            self.book.advanced(record.session, location, offset)
            if failure is not None:
                raise failure

    def _segment(
        self,
        record: SessionRecord,
        location: str,
        first: bytes,
        pieces: Iterator[bytes],
        hasher: Hasher | None,
    ) -> tuple[str, int, Exception | None]:
        """One streamed PATCH. When the client breaks off or passes a limit, the PATCH is
        ended there, cleanly: the registry keeps what it got and its session stays usable (a
        PATCH cut short would not), and the failure is returned for the caller to raise."""
        sent = 0
        failure: Exception | None = None

        def feed() -> Iterator[bytes]:
            nonlocal sent, failure
            piece: bytes | None = first
            try:
                while piece is not None:
                    if hasher is not None:
                        hasher.update(piece)
                    sent += len(piece)
                    yield piece
                    if sent >= self.segment_size:
                        return
                    piece = next(pieces, None)
            except (ClientGone, Refusal) as error:
                failure = error

        answered = self.registry.upload_stream(
            record.staging_repository, self._absolute(location), feed()
        )
        return _relative(answered), sent, failure

    def _finish(
        self, record: SessionRecord, location: str, sha256: str, size: int, filename: str
    ) -> CommitResult:
        digest = f"sha256:{sha256}"
        try:
            self.registry.finish_upload(record.staging_repository, self._absolute(location), digest)
        except Refused as error:
            if "DIGEST_INVALID" not in error.codes and error.status != 400:
                raise
            self._abandon(record, None)
            raise Refusal(
                "DigestMismatch",
                f"the registry refused the upload as {digest}: the bytes hash otherwise "
                "(the upload is discarded; start again)",
            ) from error
        committed = UploadCommitted(digest=digest, size=size, filename=filename)

        def change(current: SessionRecord) -> SessionRecord:
            if current.committed is not None:
                raise Refusal("AlreadyCommitted", "this session is already committed")
            return current.model_copy(update={"committed": committed})

        self.store.update(record.session, change)
        self.book.forget(record.session)
        return CommitResult(digest=digest, size=size, filename=filename)

    def _locate(self, record: SessionRecord, fast: bool, expected: int | None = None) -> Standing:
        """The upload's location and offset as the registry knows them. ``fast``: trust this
        replica's own latest position when it is where the client expects (no status query)."""
        deadline = time.monotonic() + self._settle
        tried: set[str] = set()
        while True:
            if record.upload is None:
                raise Refusal("NoUpload", "no upload has started in this session (POST first)")
            location = self._latest(record)
            position = self.book.position(record.session)
            if (
                fast
                and position is not None
                and position.location == location
                and (expected is None or position.offset == expected)
            ):
                return Standing(location, position.offset, record.upload)
            if location not in tried:
                tried.add(location)
                offset = self.registry.upload_offset(
                    record.staging_repository, self._absolute(location)
                )
                if offset is not None:
                    paired = (
                        position.offset
                        if position and position.location == location
                        else (record.upload.offset if record.upload.location == location else None)
                    )
                    return Standing(location, _confirmed(offset, paired), record.upload)
            if time.monotonic() >= deadline:
                raise Refusal(
                    "NoUpload",
                    "the registry no longer accepts this upload (a gateway stopped mid-upload "
                    "or a commit failed); start again with POST",
                )
            self._sleep(0.25)
            fresh = self.store.read(record.session, fresh=True)
            if fresh is None:
                raise Refusal("NoUpload", "this session has no record any more")
            record = fresh
            check_open(record, self.now())

    def _latest(self, record: SessionRecord) -> str:
        assert record.upload is not None
        stored = record.upload.location
        position = self.book.position(record.session)
        if position is None or position.upload_id != upload_id(stored):
            return stored
        return position.location if position.offset >= record.upload.offset else stored

    def _abandon(self, record: SessionRecord, location: str | None) -> None:
        """Drops the upload from the record (and the registry, when still open)."""
        self.book.forget(record.session)

        def change(current: SessionRecord) -> SessionRecord | None:
            return (
                current.model_copy(update={"upload": None}) if current.committed is None else None
            )

        self.store.update(record.session, change)
        if location is not None:
            self._cancel(record, location)

    def _cancel(self, record: SessionRecord, location: str) -> None:
        with contextlib.suppress(OciError):  # the registry expires abandoned uploads itself
            self.registry.cancel_upload(record.staging_repository, self._absolute(location))

    def _limit(self, body: Body, record: SessionRecord, offset: int, declared: int | None) -> None:
        body.limit = record.size_limit_bytes - offset
        body.too_large = _too_large(record, "the body").message
        if declared is not None and declared - offset < body.limit:
            body.limit = max(0, declared - offset)
            body.too_large = f"the body goes past the declared Upload-Length of {declared} bytes"

    def _absolute(self, location: str) -> str:
        return urljoin(self.registry.base_url + "/", location)


def _confirmed(reported: int, paired: int | None) -> int:
    """The registry's offset, read right. docker-registry's status ``Range`` is ``0-0`` for an
    empty upload and for a 1-byte one alike (``upload_offset`` reads 1); its locations carry
    their offset and it refuses a location whose offset is stale, so when it accepted a location
    paired with offset 0, the upload is empty."""
    return 0 if reported == 1 and paired == 0 else reported


def _relative(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _too_large(record: SessionRecord, what: str) -> Refusal:
    return Refusal(
        "TooLarge",
        f"{what} would pass this session's size limit of {record.size_limit_bytes} bytes",
    )
