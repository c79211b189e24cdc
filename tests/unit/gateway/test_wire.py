"""What clients send: tokens, paths, filenames, lengths and the offset a PATCH claims."""

from __future__ import annotations

import pytest

from gateway import wire
from gateway.errors import Refusal


def refused(call: object, *args: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer upload-a.xyz", "upload-a.xyz"),
        ("bearer  upload-a.xyz ", "upload-a.xyz"),
        (None, None),
        ("", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer ", None),
        ("Bearer " + "x" * 300, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert wire.bearer_token(header) == token


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/uploads/upload-abc", wire.Target("upload-abc", False)),
        ("/v1/uploads/upload-abc/commit", wire.Target("upload-abc", True)),
        ("/v1/uploads/upload-abc/other", None),
        ("/v1/uploads/", None),
        ("/v1/uploads/UPPER", None),
        ("/v1/uploads/ai-models-registry-auth", None),
        ("/v1/uploads/../etc", None),
        ("/v2/uploads/upload-abc", None),
    ],
)
def test_target(path: str, expected: wire.Target | None) -> None:
    assert wire.target(path) == expected


@pytest.mark.parametrize(
    "name", ["m.gguf", "w.safetensors", "d.tar", "d.tar.gz", "d.tgz", "d.tar.zst", "d.ZIP"]
)
def test_accepted_filenames(name: str) -> None:
    assert wire.filename({"filename": name}) == name


@pytest.mark.parametrize("name", ["model.bin", "a/b.gguf", "..", ".gguf", "x.tar.bz2", "x\n.zip"])
def test_refused_filenames(name: str) -> None:
    assert refused(wire.filename, {"filename": name}).code == "UnsupportedFormat"


def test_missing_filename_is_a_bad_request() -> None:
    refusal = refused(wire.filename, {})
    assert (refusal.code, refusal.status) == ("BadRequest", 400)


def test_query_refuses_repeated_and_long() -> None:
    assert wire.query("filename=a.gguf&sha256=" + "0" * 64)["filename"] == "a.gguf"
    assert "twice" in refused(wire.query, "filename=a.gguf&filename=b.gguf").message
    assert refused(wire.query, "x=" + "a" * 3000).code == "BadRequest"


def test_sha256_param() -> None:
    assert wire.sha256_param({"sha256": "ab" * 32}) == "ab" * 32
    assert wire.sha256_param({}) is None
    assert refused(wire.sha256_param, {"sha256": "AB" * 32}).code == "BadRequest"


def test_body_length() -> None:
    assert wire.body_length("12", None) == 12
    assert wire.body_length(None, "chunked") is None
    assert "Content-Length or chunked" in refused(wire.body_length, None, None).message
    assert refused(wire.body_length, "5", "chunked").code == "BadRequest"
    assert refused(wire.body_length, None, "gzip").code == "BadRequest"
    assert "negative" in refused(wire.body_length, "-1", None).message


def test_claim_from_upload_offset() -> None:
    assert wire.claim("8388608", None, 10) == wire.Claim(8388608)


def test_claim_from_content_range() -> None:
    assert wire.claim(None, "bytes 10-19/*", 10) == wire.Claim(10)
    assert wire.claim("10", "bytes 10-19/100", 10) == wire.Claim(10, 100)


@pytest.mark.parametrize(
    ("upload_offset", "content_range", "length", "says"),
    [
        ("-5", None, 10, "negative"),
        (None, "bytes -5-4/*", 10, "negative"),
        (None, "bytes 10-9/*", 0, "ends before it starts"),
        (None, "bytes 0-9/*", 11, "the body has 11"),
        (None, "bytes 0-9/5", 10, "past its total"),
        (None, "items 0-9/*", 10, "not bytes"),
        (None, "bytes zero-nine/*", 10, "not bytes"),
        ("0", "bytes 5-14/*", 10, "disagree"),
        ("abc", None, 10, "not a byte count"),
        (None, None, 10, "needs an Upload-Offset or a Content-Range"),
    ],
)
def test_bad_claims(
    upload_offset: str | None, content_range: str | None, length: int, says: str
) -> None:
    refusal = refused(wire.claim, upload_offset, content_range, length)
    assert (refusal.code, refusal.status) == ("BadRequest", 400)
    assert says in refusal.message


def test_commit_request() -> None:
    request = wire.commit_request(b'{"sha256": "' + b"a" * 64 + b'", "size": 5}')
    assert (request.sha256, request.size) == ("a" * 64, 5)
    assert refused(wire.commit_request, b'{"size": 5}').code == "BadRequest"
    assert refused(wire.commit_request, b'{"sha256": "' + b"a" * 64 + b'", "size": -1}').code == (
        "BadRequest"
    )
    assert refused(wire.commit_request, b"x" * 5000).code == "BadRequest"
