"""What the worker's transfers share: the resumable ``ChunkOpener``, and the
``DigestMismatch`` fact. Digests themselves (``sha256:<64 hex>``) are ``oci.digest``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
