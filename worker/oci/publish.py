"""The transfer engine: a source's planned files become a ModelPack artifact in a target.

Stages, each announced to the ``ProgressSink``: ``transfer`` (every file becomes a raw layer blob;
a file whose sha256 the plan knows and the target already has is skipped — neither downloaded
nor sent; a small file without a known sha256 is read and hashed first, and not sent when the
target has it; so is every file of a local plan, hashed in one read pass before it is sent, the
next ones while the first are sent: ``hash_ahead.py``), ``config`` (the ModelPack config blob),
``manifest`` (the manifest, tagged).

Up to ``concurrency`` files move at once, the largest first, each streamed from
``Source.stream`` straight into the target; memory stays around ``LOCAL_READ_SIZE *
concurrency`` (plus a download's read-ahead; twice that for a local plan, whose next files are
hashed meanwhile): every file is read in 1 MiB pieces and streamed to the registry
(``upload.py``). One transfer per digest: files with the same content (known in advance or
learned by hashing first) are sent once; the others wait for it and count as skipped. Only a
large remote file without a stated sha256 is hashed while it streams.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from api.model import ArtifactStatus, ResolvedMetadata
from oci.digest import sha256_digest
from worker.errors import InvalidWeights, TransientError
from worker.oci.content import ChunkOpener, DigestMismatch
from worker.oci.hash_ahead import HashAhead
from worker.oci.modelpack import (
    ARTIFACT_TYPE,
    MANIFEST_MEDIA_TYPE,
    Layer,
    build_config,
    build_manifest,
    manifest_annotations,
)
from worker.oci.target import ArtifactTarget
from worker.plan import PlannedFile, Source, SourcePlan

DEFAULT_CHUNK_SIZE = 8 << 20
LOCAL_READ_SIZE = 1 << 20
log = structlog.get_logger("publish")
Stage = Literal["transfer", "config", "manifest"]


class ProgressSink(Protocol):
    """What publishing tells about itself. Calls are serialized (never two at once).

    For each file: ``file_started``, then ``advance`` calls adding up to its size (a resumed
    upload first reports the bytes the target already held in one call; an upload that had to
    start over may report some bytes twice), then ``file_done``. A skipped file gets no
    ``advance``: its whole size counts as done.
    """

    def stage(self, name: Stage) -> None: ...

    def file_started(self, path: str, size: int) -> None: ...

    def advance(self, path: str, nbytes: int) -> None: ...

    def file_done(self, path: str, skipped: bool) -> None: ...


@dataclass(frozen=True)
class PublishedArtifact:
    reference: str
    """Where the artifact is, pinned by digest (``host/repo@sha256:…`` or ``<dir>@sha256:…``)."""
    digest: str
    """The manifest digest."""
    media_type: str
    """The manifest's artifactType."""
    size_bytes: int
    """Config plus layers."""

    def to_status(self) -> ArtifactStatus:
        """``status.artifact`` as the API writes it."""
        return ArtifactStatus(
            kind="OCI", digest=self.digest, media_type=self.media_type, size_bytes=self.size_bytes
        )


class Interrupted(TransientError):  # noqa: N818 - named after its reason
    """SIGTERM during ``publish`` (``worker/shutdown.py``): what the registry accepted is kept
    for the next run."""

    reason = "Interrupted"


class _Cancelled(Exception):  # noqa: N818 - internal control flow, never escapes publish
    """Another file failed: this one stops between two chunks."""


class _Flights:
    """One transfer per digest: the first file with a digest moves the blob, later files with
    the same digest wait for it (two writers of one blob would race in the target)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._landed: dict[str, threading.Event] = {}
        self._failed: set[str] = set()

    def claim(self, digest: str) -> threading.Event | None:
        """None: the caller moves the blob and must call ``finish``. Else the flight to wait on."""
        with self._lock:
            if digest in self._landed:
                return self._landed[digest]
            self._landed[digest] = threading.Event()
            return None

    def finish(self, digest: str, ok: bool) -> None:
        with self._lock:
            if not ok:
                self._failed.add(digest)
            event = self._landed[digest]
        event.set()

    def failed(self, digest: str) -> bool:
        with self._lock:
            return digest in self._failed


class _SerializedProgress:
    def __init__(self, sink: ProgressSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()

    def stage(self, name: Stage) -> None:
        with self._lock:
            self._sink.stage(name)

    def file_started(self, path: str, size: int) -> None:
        with self._lock:
            self._sink.file_started(path, size)

    def advance(self, path: str, nbytes: int) -> None:
        if nbytes:
            with self._lock:
                self._sink.advance(path, nbytes)

    def file_done(self, path: str, skipped: bool) -> None:
        with self._lock:
            self._sink.file_done(path, skipped)


class _Transfer:
    """Moves the plan's files into the target; one instance per publish call."""

    def __init__(
        self,
        source: Source,
        target: ArtifactTarget,
        progress: ProgressSink,
        chunk_size: int,
        *,
        hash_first: bool = False,
        terminated: threading.Event | None = None,
    ) -> None:
        self._source = source
        self._target = target
        self._progress = progress
        self._chunk_size = chunk_size
        # Every file is read in small pieces: its upload streams (no chunk is assembled), so a
        # smaller read only lowers the memory held per file in flight.
        self._read_size = min(chunk_size, LOCAL_READ_SIZE)
        self._hash_first = hash_first
        self._stop = threading.Event()
        self._terminated = terminated or threading.Event()
        self._flights = _Flights()
        self._ahead: HashAhead | None = None

    def run(self, files: tuple[PlannedFile, ...], concurrency: int) -> list[Layer]:
        firsts, copies = _split_duplicates(files)
        ordered = _largest_first(firsts)
        self._ahead = self._hash_ahead(ordered, concurrency)
        try:
            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                futures = {f.path: pool.submit(self._guarded, f) for f in ordered}
                done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
                if any(future.exception() for future in done):
                    self._stop.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    if self._terminated.is_set():
                        raise Interrupted(
                            "stopped by SIGTERM; the registry keeps what it accepted, and the "
                            "next run resumes each file from there"
                        )
                    raise _first_error(futures.values())
        finally:
            if self._ahead is not None:
                self._ahead.close()
        digests = {path: future.result() for path, future in futures.items()}
        for copy, original in copies:
            digests[copy.path] = digests[original]
            self._progress.file_started(copy.path, copy.size)
            self._progress.file_done(copy.path, True)
        return [Layer(f.path, f.role, digests[f.path], f.size) for f in files]

    def _hash_ahead(self, ordered: list[PlannedFile], slots: int) -> HashAhead | None:
        """A local plan's large files are hashed ahead of their uploads (``hash_ahead.py``);
        the small ones are read whole in their slot (``_small``)."""
        if not self._hash_first:
            return None
        large = [f for f in ordered if f.sha256 is None and f.size > self._chunk_size]
        return HashAhead(large, self._hash, slots=slots, stop=self._stop, cancelled=_Cancelled)

    def _guarded(self, planned: PlannedFile) -> str:
        # The failing worker itself raises the flag, so no queued file starts after a failure.
        if self._stop.is_set() or self._terminated.is_set():
            raise _Cancelled(planned.path)
        try:
            return self._one(planned)
        except BaseException:
            self._stop.set()
            raise

    def _one(self, planned: PlannedFile) -> str:
        path = planned.path
        self._progress.file_started(path, planned.size)
        opener: ChunkOpener = lambda offset: self._chunks(path, offset)  # noqa: E731
        digest = f"sha256:{planned.sha256}" if planned.sha256 else None
        if digest is None and planned.size <= self._chunk_size:
            # A small file without a stated sha256 (a config, a tokenizer) is read first: its
            # digest then decides whether it must be sent at all, as for the big files.
            data = self._small(planned)
            digest, opener = sha256_digest(data), lambda offset: [data[offset:]]
        elif digest is None and self._ahead is not None and planned in self._ahead:
            # A local file: one read pass (which also fills the page cache for the send)
            # costs far less than sending bytes the target may already have.
            digest = self._ahead.digest(planned)
        if digest is None:
            return self._put(planned, opener, None)
        return self._once(planned, digest, opener)

    def _once(self, planned: PlannedFile, digest: str, opener: ChunkOpener) -> str:
        """Moves the blob unless the target has it or another file of the plan is moving it."""
        flight = self._flights.claim(digest)
        if flight is not None:
            flight.wait()
            if self._flights.failed(digest):
                raise _Cancelled(planned.path)
            self._progress.file_done(planned.path, True)
            return digest
        ok = False
        try:
            if self._target.has_blob(digest, planned.size):
                self._progress.file_done(planned.path, True)
            else:
                self._put(planned, opener, digest)
            ok = True
        finally:
            self._flights.finish(digest, ok)
        return digest

    def _small(self, planned: PlannedFile) -> bytes:
        data = b"".join(self._chunks(planned.path, 0))
        if len(data) != planned.size:
            raise _invalid(planned, DigestMismatch(str(planned.size), str(len(data)), "size"))
        return data

    def _hash(self, planned: PlannedFile) -> str:
        hasher, total = hashlib.sha256(), 0
        for chunk in self._chunks(planned.path, 0):
            hasher.update(chunk)
            total += len(chunk)
            if total > planned.size:  # a file growing under us: no need to read it all
                break
        if total != planned.size:
            raise _invalid(planned, DigestMismatch(str(planned.size), str(total), "size"))
        return "sha256:" + hasher.hexdigest()

    def _put(self, planned: PlannedFile, open_chunks: ChunkOpener, known: str | None) -> str:
        # Bytes that do not match their announced sha256 may be a corruption in transit: the
        # file is fetched and sent once more before the source is declared at fault.
        for attempt in (1, 2):
            try:
                digest = self._target.put_blob(
                    open_chunks,
                    planned.size,
                    known,
                    lambda nbytes: self._progress.advance(planned.path, nbytes),
                    streamed=self._hash_first,
                )
            except DigestMismatch as mismatch:
                if attempt == 2:
                    raise _invalid(planned, mismatch) from None
                log.warning(
                    "content does not match its sha256, fetching it again", file=planned.path
                )
                continue
            self._progress.file_done(planned.path, False)
            return digest
        raise AssertionError("unreachable")

    def _chunks(self, path: str, offset: int) -> Iterator[bytes]:
        for chunk in self._source.stream(path, offset, self._read_size):
            if self._stop.is_set() or self._terminated.is_set():
                raise _Cancelled(path)
            yield chunk


def _split_duplicates(
    files: Iterable[PlannedFile],
) -> tuple[list[PlannedFile], list[tuple[PlannedFile, str]]]:
    """Files to transfer, and (copy, path of the transferred original) for same-sha256 files."""
    firsts: list[PlannedFile] = []
    copies: list[tuple[PlannedFile, str]] = []
    seen: dict[str, str] = {}
    for planned in files:
        if planned.sha256 and planned.sha256 in seen:
            copies.append((planned, seen[planned.sha256]))
            continue
        if planned.sha256:
            seen[planned.sha256] = planned.path
        firsts.append(planned)
    return firsts, copies


def _largest_first(files: list[PlannedFile]) -> list[PlannedFile]:
    """The order files start in: the largest first (ties in plan order). The largest file is
    the transfer's critical path; the small ones (configs, tokenizers: a few requests each) go
    beside it in the other slots instead of delaying its start (MiniLM: 3 small files, 70 ms,
    went first in plan order)."""
    return sorted(files, key=lambda planned: -planned.size)


def _first_error(futures: Iterable[Future[str]]) -> BaseException:
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if e is not None and not isinstance(e, _Cancelled)]
    error = (real or errors)[0]
    assert error is not None
    return error


def _invalid(planned: PlannedFile, mismatch: DigestMismatch) -> InvalidWeights:
    if mismatch.what == "size":
        return InvalidWeights(
            f"{planned.path}: the source served {mismatch.actual} bytes but announced "
            f"{mismatch.expected}; the file changed while it was published, publish again"
        )
    return InvalidWeights(
        f"{planned.path}: the content does not match its announced sha256 "
        f"({mismatch.expected}, got {mismatch.actual}); the source served other bytes than it "
        "lists; publish again, or prepare another revision as a new Model"
    )


def publish(
    plan: SourcePlan,
    source: Source,
    resolved: ResolvedMetadata,
    target: ArtifactTarget,
    *,
    progress: ProgressSink,
    concurrency: int = 3,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    precision: str | None = None,
    terminated: threading.Event | None = None,
) -> PublishedArtifact:
    """Publishes the plan's files as a ModelPack artifact; returns where it landed.

    ``terminated`` (``shutdown.STOP``): once set, every transfer stops at its next piece, an open
    streamed body ends there (the registry keeps it), and ``Interrupted`` is raised."""
    if not plan.files:
        raise ValueError("the plan has no files to publish")
    sink = _SerializedProgress(progress)
    sink.stage("transfer")
    transfer = _Transfer(
        source, target, sink, chunk_size, hash_first=plan.local, terminated=terminated
    )
    layers = transfer.run(plan.files, concurrency)
    sink.stage("config")
    config = build_config(plan, resolved, layers, precision=precision)
    config_digest = _put_small(target, config)
    sink.stage("manifest")
    annotations = manifest_annotations(plan, resolved)
    manifest = build_manifest(config_digest, len(config), layers, annotations)
    digest = target.put_manifest(manifest, MANIFEST_MEDIA_TYPE, target.tag)
    size = len(config) + sum(layer.size for layer in layers)
    return PublishedArtifact(target.pinned(digest), digest, ARTIFACT_TYPE, size)


def _put_small(target: ArtifactTarget, data: bytes) -> str:
    digest = sha256_digest(data)
    if target.has_blob(digest, len(data)):
        return digest
    return target.put_blob(lambda offset: [data[offset:]], len(data), digest, lambda _: None)
