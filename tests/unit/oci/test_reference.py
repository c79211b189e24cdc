"""Reference parsing: the accepted forms and the refused ones, each with its reason."""

from __future__ import annotations

import pytest

from oci.errors import InvalidReference
from oci.reference import Reference, parse_reference

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/ai/model", Reference("127.0.0.1:5000", "ai/model")),
        ("registry.local/ai/model:v1", Reference("registry.local", "ai/model", "v1")),
        ("localhost/m", Reference("localhost", "m")),
        ("localhost:5000/m:latest", Reference("localhost:5000", "m", "latest")),
        ("registry:5000/a/b/c", Reference("registry:5000", "a/b/c")),
        (f"r.io/a/b@{DIGEST}", Reference("r.io", "a/b", None, DIGEST)),
        (f"r.io/a/b:t@{DIGEST}", Reference("r.io", "a/b", "t", DIGEST)),
        ("http://127.0.0.1:5000/x", Reference("127.0.0.1:5000", "x", scheme="http")),
        ("https://r.io/x:tag", Reference("r.io", "x", "tag", scheme="https")),
        ("r.io/a.b_c__d-e--f/g", Reference("r.io", "a.b_c__d-e--f/g")),
        ("[::1]:5000/x", Reference("[::1]:5000", "x")),
        ("r.io/p/model/ns/name:4a5e7c1e-uid", Reference("r.io", "p/model/ns/name", "4a5e7c1e-uid")),
    ],
)
def test_parses(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ubuntu", "expected host"),
        ("library/ubuntu", "is not a registry host"),
        ("r.io/", "expected host"),
        ("r.io/UPPER", "lower-case"),
        ("r.io/a//b", "lower-case"),
        ("r.io/a/-b", "lower-case"),
        ("r.io/a:bad tag", "not a valid tag"),
        ("r.io/a:" + "t" * 129, "not a valid tag"),
        ("r.io/a@sha256:abc", "not a sha256"),
        ("r.io/a@md5:" + "0" * 32, "not a sha256"),
        ("r.io/" + "a" * 256, "more than the registry limit of 255"),
    ],
)
def test_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference, match=reason):
        parse_reference(text)


def test_renders_back() -> None:
    text = f"r.io:443/a/b:t@{DIGEST}"
    reference = parse_reference(text)
    assert str(reference) == text
    assert reference.name == "r.io:443/a/b"
    assert str(reference.with_digest(DIGEST)) == text
