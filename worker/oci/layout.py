"""An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``).

Written so that a reader never sees a half-written blob: each blob streams into a hidden
``.partial`` file beside its final place, is verified (size and sha256), flushed to disk and
renamed; ``index.json`` is rewritten (temp file + rename) only after its manifest blob exists.
A partial blob whose digest is known is resumed by the next writer: its bytes are re-hashed from
the local disk and the source is reopened where it ends.

One writer per digest: a writer holds an exclusive ``flock`` on the partial file from the
re-hash to the rename, so a second writer of the same digest (another thread, another process)
waits, then finds the blob in place and reads nothing. Without it both appended to one partial
file and the first rename published a file whose bytes were not its name's.

A blob is present when its file exists with the expected size. Its content is not re-hashed
(about 1 s per GiB): a blob file only ever appears through the verified rename above.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from oci.digest import hex_of, sha256_digest
from worker.errors import InsufficientStorage, is_out_of_space
from worker.oci.content import ByteCounter, ChunkOpener, DigestMismatch

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_READ_SIZE = 8 << 20


class InvalidLayout(ValueError):  # noqa: N818 - a wrong path given by the caller
    """The directory is not an OCI image layout (or not one we can write)."""


class OciLayout:
    def __init__(self, root: Path, *, create: bool) -> None:
        self.root = root
        self._lock = threading.Lock()
        if create:
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (root / LAYOUT_FILE).exists():
                _write_atomically(root / LAYOUT_FILE, b'{"imageLayoutVersion":"1.0.0"}')
        elif not (root / LAYOUT_FILE).is_file():
            raise InvalidLayout(f"{root} is not an OCI image layout (no {LAYOUT_FILE} file)")

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        """True when the blob's file exists (with ``size`` bytes, when given)."""
        try:
            stat = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or stat.st_size == size

    def blob_chunks(self, digest: str, offset: int = 0) -> Iterator[bytes]:
        with self.blob_path(digest).open("rb") as file:
            file.seek(offset)
            while piece := file.read(_READ_SIZE):
                yield piece

    def write_blob(
        self, open_chunks: ChunkOpener, size: int, digest: str | None, on_bytes: ByteCounter
    ) -> str:
        """Streams a blob in; returns its digest. Raises ``DigestMismatch`` on wrong content."""
        if digest is None:  # nothing to share or resume by: a partial file of its own
            partial = self._partial_path(None)
            with partial.open("ab") as file:
                return self._fill(file, partial, open_chunks, size, None, on_bytes)
        while True:
            if self.has_blob(digest, size):
                return digest
            partial = self._partial_path(digest)
            with partial.open("ab") as file:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX)  # waits for another writer
                if not _names(partial, file):
                    continue  # the writer we waited for renamed (or dropped) this file
                if self.has_blob(digest, size):  # it finished just before we opened the file
                    partial.unlink()
                    return digest
                return self._fill(file, partial, open_chunks, size, digest, on_bytes)

    def _fill(
        self,
        file: BinaryIO,
        partial: Path,
        open_chunks: ChunkOpener,
        size: int,
        digest: str | None,
        on_bytes: ByteCounter,
    ) -> str:
        """Completes ``partial`` (opened for appending, locked when named by digest), verifies
        it and renames it into place; the rename happens while the lock is still held."""
        hasher = hashlib.sha256()
        offset = _rehash(partial, file, hasher, size)
        on_bytes(offset)
        try:
            written = _copy(open_chunks(offset), file, hasher, size - offset, on_bytes)
            file.flush()
            os.fsync(file.fileno())
            actual = "sha256:" + hasher.hexdigest()
            if offset + written != size:
                raise DigestMismatch(str(size), str(offset + written), "size")
            if digest is not None and actual != digest:
                raise DigestMismatch(digest, actual)
        except BaseException as error:
            # A wrong blob is worthless; an unnamed one cannot be resumed by anyone.
            if isinstance(error, DigestMismatch) or digest is None:
                partial.unlink(missing_ok=True)
            if is_out_of_space(error):
                raise InsufficientStorage(
                    f"{self.root}: no space left on its device while writing blob "
                    f"{digest or '(digest not known yet)'} ({error.strerror}); free space or use "
                    "a larger volume, then run again"
                ) from error
            raise
        os.replace(partial, self.blob_path(actual))
        return actual

    def _partial_path(self, digest: str | None) -> Path:
        directory = self.root / "blobs" / "sha256"
        if digest is None:  # nothing to resume by: a name of its own
            return directory / f".upload-{uuid.uuid4().hex}.partial"
        return directory / f".{hex_of(digest)}.partial"

    def add_manifest(
        self, data: bytes, media_type: str, tag: str | None, artifact_type: str | None
    ) -> str:
        """Stores the manifest blob, then points ``index.json`` at it (under ``tag``)."""
        digest = sha256_digest(data)
        if not self.has_blob(digest, len(data)):
            _write_atomically(self.blob_path(digest), data)
        entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if artifact_type:
            entry["artifactType"] = artifact_type
        if tag:
            entry["annotations"] = {REF_NAME_ANNOTATION: tag}
        with self._lock:
            index = self.read_index()
            index["manifests"] = [e for e in index["manifests"] if not _replaced_by(e, entry)]
            index["manifests"].append(entry)
            _write_atomically(self.root / INDEX_FILE, json.dumps(index, indent=2).encode())
        return digest

    def read_index(self) -> dict[str, Any]:
        path = self.root / INDEX_FILE
        if not path.is_file():
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise InvalidLayout(f"{path} is not valid JSON: {error}") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise InvalidLayout(f"{path} has no 'manifests' list")
        return index

    def resolve_tag(self, tag: str) -> str | None:
        for entry in self.read_index()["manifests"]:
            if (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION) == tag:
                return str(entry["digest"])
        return None


def _replaced_by(old: dict[str, Any], new: dict[str, Any]) -> bool:
    old_tag = (old.get("annotations") or {}).get(REF_NAME_ANNOTATION)
    new_tag = (new.get("annotations") or {}).get(REF_NAME_ANNOTATION)
    if new_tag is not None:
        return bool(old_tag == new_tag or (old_tag is None and old.get("digest") == new["digest"]))
    return bool(old.get("digest") == new["digest"] and old_tag is None)


def _names(path: Path, file: BinaryIO) -> bool:
    """True when ``path`` still names the open ``file`` (not renamed or replaced meanwhile)."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(file.fileno())
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _rehash(partial: Path, file: BinaryIO, hasher: Any, size: int) -> int:
    """Feeds what the partial file holds to ``hasher``; returns its length (0 if unusable)."""
    length = os.fstat(file.fileno()).st_size
    if length > size:
        file.truncate(0)
        return 0
    with partial.open("rb") as reader:
        while piece := reader.read(_READ_SIZE):
            hasher.update(piece)
    return length


def _copy(pieces: Any, file: BinaryIO, hasher: Any, limit: int, on_bytes: ByteCounter) -> int:
    written = 0
    try:
        for piece in pieces:
            written += len(piece)
            if written > limit:  # more bytes than announced: stop before filling the disk
                return written
            hasher.update(piece)
            file.write(piece)
            on_bytes(len(piece))
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    return written


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
