"""A request body as pieces of exactly ``size`` bytes (the last one shorter), read straight from
the client's socket: one piece is in memory per request, nothing is written to disk.

A client that breaks off mid-piece raises ``ClientGone`` and its partial piece is dropped;
``uploads`` then ends the registry PATCH cleanly after the last whole piece, and the client
resumes from there (``Upload-Offset``).

Both body framings: ``Content-Length``, and chunked transfer encoding (decoded here: the
standard library's server does not), with the chunk-size line and the trailers bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from gateway.errors import ClientGone, Refusal, bad_request

_MAX_LINE = 1024


class Readable(Protocol):
    """The client's socket file (``rfile``)."""

    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


_MAX_TRAILERS = 32


class Body:
    def __init__(self, stream: Readable, length: int | None) -> None:
        """``length``: Content-Length, or None for a chunked body."""
        self._stream = stream
        self._length = length
        self.limit = 1 << 62
        """More bytes than this are refused with 413 ``TooLarge`` (checked as they arrive)."""
        self.too_large = "the body is too large"
        """The refusal's message."""
        self.received = 0
        self.complete = length == 0
        self._chunk_left = 0

    @property
    def length(self) -> int | None:
        return self._length

    def check_length(self) -> None:
        """Refuses a declared Content-Length past the limit before a byte is read."""
        if self._length is not None and self._length > self.limit:
            raise Refusal("TooLarge", self.too_large)

    def chunks(self, size: int) -> Iterator[bytes]:
        self.check_length()
        while not self.complete:
            piece = self._read_whole(size)
            if piece:
                yield piece

    def _read_whole(self, size: int) -> bytes:
        if self._length is not None:
            wanted = min(size, self._length - self.received)
            piece = self._read(wanted)
            self._count(len(piece))
            self.complete = self.received == self._length
            return piece
        parts: list[bytes] = []
        filled = 0
        while filled < size and not self.complete:
            part = self._read_chunked(size - filled)
            parts.append(part)
            filled += len(part)
        return b"".join(parts)

    def _read_chunked(self, wanted: int) -> bytes:
        if self._chunk_left == 0:
            self._chunk_left = self._chunk_size()
            if self._chunk_left == 0:
                self._skip_trailers()
                self.complete = True
                return b""
        piece = self._read(min(wanted, self._chunk_left))
        self._chunk_left -= len(piece)
        self._count(len(piece))
        if self._chunk_left == 0 and self._line() != b"":
            raise bad_request("a chunk of the chunked body does not end with CRLF")
        return piece

    def _chunk_size(self) -> int:
        line = self._line().split(b";", 1)[0].strip()
        if not line or len(line) > 16:
            raise bad_request("a chunk size line of the chunked body is malformed")
        try:
            return int(line, 16)
        except ValueError:
            raise bad_request("a chunk size of the chunked body is not hexadecimal") from None

    def _skip_trailers(self) -> None:
        for _ in range(_MAX_TRAILERS):
            if self._line() == b"":
                return
        raise bad_request("the chunked body has too many trailers")

    def _line(self) -> bytes:
        try:
            line = self._stream.readline(_MAX_LINE + 1)
        except OSError as error:
            raise ClientGone(str(error)) from error
        if not line.endswith(b"\n"):
            if len(line) > _MAX_LINE:
                raise bad_request("a line of the chunked body is too long")
            raise ClientGone("the body ended early")
        return line.rstrip(b"\r\n")

    def _read(self, wanted: int) -> bytes:
        try:
            piece = self._stream.read(wanted)
        except OSError as error:
            raise ClientGone(str(error)) from error
        if len(piece) < wanted:
            raise ClientGone(f"the body ended after {self.received + len(piece)} bytes")
        return piece

    def _count(self, n: int) -> None:
        self.received += n
        if self.received > self.limit:
            raise Refusal("TooLarge", self.too_large)
