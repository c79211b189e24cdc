"""A request body that streams from an iterable yet announces its length.

``requests`` sends an iterable with ``Transfer-Encoding: chunked`` unless it can tell the
length; a registry wants ``Content-Length`` on an upload PATCH (the distribution spec requires
it for a chunk). ``len()`` gives ``requests`` the length, and ``urllib3`` then sends each piece
as it comes, without framing: memory is one piece of the source, whatever the body's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class SizedBody:
    """``length`` bytes from ``pieces``; iterable once (a body cannot be replayed)."""

    def __init__(self, pieces: Iterable[bytes], length: int) -> None:
        self._pieces = pieces
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._pieces)
