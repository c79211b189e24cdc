"""Request bodies as whole chunks: Content-Length, chunked, limits, a client that stops."""

from __future__ import annotations

import io

import pytest

from gateway.body import Body
from gateway.errors import ClientGone, Refusal


def chunked(*pieces: bytes, tail: bytes = b"0\r\n\r\n") -> io.BytesIO:
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return io.BytesIO(encoded + tail)


def test_content_length_body_in_whole_chunks() -> None:
    body = Body(io.BytesIO(b"a" * 25 + b"NEXT REQUEST"), 25)
    assert [len(c) for c in body.chunks(10)] == [10, 10, 5]
    assert (body.received, body.complete) == (25, True)


def test_chunked_body_regrouped_into_whole_chunks() -> None:
    body = Body(chunked(b"abc", b"defgh", b"ij"), None)
    assert list(body.chunks(4)) == [b"abcd", b"efgh", b"ij"]
    assert body.complete


def test_chunked_trailers_are_skipped() -> None:
    body = Body(chunked(b"abc", tail=b"0\r\nX-Trailer: 1\r\n\r\n"), None)
    assert list(body.chunks(8)) == [b"abc"]


def test_a_client_that_stops_mid_chunk_sends_nothing_of_it() -> None:
    body = Body(io.BytesIO(b"a" * 15), 30)
    chunks = body.chunks(10)
    assert next(chunks) == b"a" * 10
    with pytest.raises(ClientGone):
        next(chunks)


def test_declared_length_past_the_limit_is_refused_before_reading() -> None:
    stream = io.BytesIO(b"a" * 100)
    body = Body(stream, 100)
    body.limit, body.too_large = 99, "too large"
    with pytest.raises(Refusal) as caught:
        next(body.chunks(10))
    assert (caught.value.code, caught.value.status, stream.tell()) == ("TooLarge", 413, 0)


def test_chunked_body_past_the_limit_is_refused_as_it_arrives() -> None:
    body = Body(chunked(b"a" * 8, b"b" * 8), None)
    body.limit = 12
    chunks = body.chunks(8)
    assert next(chunks) == b"a" * 8
    with pytest.raises(Refusal) as caught:
        next(chunks)
    assert caught.value.code == "TooLarge"


@pytest.mark.parametrize(
    "raw",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcX\r\n0\r\n\r\n", b"1" * 2000 + b"\r\n"],
    ids=["not hex", "no CRLF after data", "endless size line"],
)
def test_malformed_chunked_bodies(raw: bytes) -> None:
    with pytest.raises(Refusal) as caught:
        list(Body(io.BytesIO(raw), None).chunks(8))
    assert caught.value.code == "BadRequest"
