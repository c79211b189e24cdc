"""Fetched manifests are parsed within bounds: 4 MiB, nesting depth 32 measured before parsing."""

from __future__ import annotations

import json

import pytest

from oci.errors import BadResponse
from oci.manifest import MAX_MANIFEST_BYTES, Manifest, json_depth, parse_bounded_json


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"{}", 1),
        (b'{"a":[{"b":"[[[{{{"}]}', 3),
        (rb'["\\", "\\\"[[[", [[1]]]', 3),
        (b"[" * 5000 + b"]" * 5000, 5000),
        (b"1", 0),
    ],
)
def test_json_depth_ignores_brackets_inside_strings(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth
    if depth < 100:  # each sample is valid JSON (the depth is exact only for valid JSON)
        json.loads(text)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 33 + b"]" * 33, "ref: the manifest nests deeper than 32 levels"),
        (b" " * (MAX_MANIFEST_BYTES + 1), "ref: the manifest is larger than 4,194,304 bytes"),
        (b'{"a": ', "ref: the manifest is not JSON: Expecting value: line 1 column 7 (char 6)"),
    ],
)
def test_out_of_bounds_documents_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(BadResponse) as caught:
        parse_bounded_json(data, "ref", "manifest")
    assert caught.value.message == message


def test_a_manifest_document_must_be_an_object() -> None:
    assert Manifest(b'{"schemaVersion": 2}', "x/y", "d").document("ref") == {"schemaVersion": 2}
    with pytest.raises(BadResponse, match=r"^ref: the manifest is not a JSON object$"):
        Manifest(b"[[1]]", "x/y", "d").document("ref")
    assert parse_bounded_json(b"[" * 32 + b"]" * 32, "ref", "manifest") is not None
