"""Content-addressing helpers shared by the OCI modules: digests, re-chunking, hashing streams.

Every blob in this package is addressed by ``sha256:<64 lower-case hex>``; other algorithms are
refused on input rather than half-supported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")

ChunkOpener = Callable[[int], Iterable[bytes]]
"""Opens a blob's bytes from an offset. Resumable transfers reopen it where the medium stopped,
so the bytes already committed are neither read from the source nor sent again."""

ByteCounter = Callable[[int], None]
"""Told how many more bytes reached the destination (progress)."""


class DigestMismatch(Exception):  # noqa: N818 - a fact, not a failure reason of its own
    """The bytes do not hash (or do not count) to what was announced.

    Raised by the targets and by materialize; callers that know which file it was turn it into
    the user-facing ``InvalidWeights`` naming the file.
    """

    def __init__(self, expected: str, actual: str, what: str = "digest") -> None:
        super().__init__(f"{what} mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual
        self.what = what


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    return DIGEST_PATTERN.match(value) is not None


def hex_of(digest: str) -> str:
    """The hex part of a checked digest (it names blob files, so it must be checked first)."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.removeprefix("sha256:")


def rechunk(pieces: Iterable[bytes], chunk_size: int) -> Iterator[bytes]:
    """Exactly ``chunk_size`` bytes per chunk (the last one shorter), whatever the source yields.

    At most one chunk plus one piece is held in memory.
    """
    buffer = bytearray()
    for piece in pieces:
        if not buffer and len(piece) == chunk_size:
            yield piece  # the common case: no copy
            continue
        buffer += piece
        while len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    if buffer:
        yield bytes(buffer)
