"""Error bodies and headers of both APIs, and the read API's scope and range rules."""

from __future__ import annotations

import json

import pytest

from catalog.answers import Refusal, bearer, unauthorized
from catalog.grants import GrantClaims
from catalog.readapi import Target, byte_range, check_scope, cut, parse_target

DIGEST = "sha256:" + "d" * 64
BLOB = "sha256:" + "e" * 64


def test_a_v1_error_is_an_error_body_with_retry_after() -> None:
    refusal = Refusal(429, "TooManyRequests", "slow down", retry_after=7)
    assert json.loads(refusal.body(registry_api=False)) == {
        "code": "TooManyRequests",
        "message": "slow down",
    }
    assert refusal.headers() == {"Retry-After": "7"}


def test_a_registry_api_error_is_in_the_registry_shape_with_the_challenge() -> None:
    refusal = unauthorized("the grant expired", grant=True)
    assert json.loads(refusal.body(registry_api=True)) == {
        "errors": [{"code": "UNAUTHORIZED", "message": "the grant expired"}]
    }
    assert refusal.headers() == {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def test_a_client_401_challenges_for_the_client_token() -> None:
    refusal = unauthorized("no")
    assert (refusal.status, refusal.code) == (401, "Unauthorized")
    assert refusal.headers() == {"WWW-Authenticate": 'Bearer realm="ai-models-catalog"'}


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer ", "Bearer " + "x" * 5000])
def test_bad_authorization_headers_are_401(header: str) -> None:
    with pytest.raises(Refusal) as caught:
        bearer(header, 4096)
    assert caught.value.status == 401


def test_a_bearer_token_is_taken_from_the_header() -> None:
    assert bearer("Bearer abc.def", 4096) == "abc.def"
    assert bearer("bearer  abc ", 4096) == "abc"


def test_paths_of_the_read_api() -> None:
    assert parse_target(f"/v2/ai-models/clustermodel/a/manifests/{DIGEST}") == Target(
        "ai-models/clustermodel/a", "manifests", DIGEST
    )
    assert parse_target(f"/v2/a/blobs/{BLOB}") == Target("a", "blobs", BLOB)
    assert parse_target("/v2/a/manifests/latest") is None
    assert parse_target(f"/v2/A/blobs/{BLOB}") is None
    assert parse_target(f"/v2/a/tags/{BLOB}") is None


CLAIMS = GrantClaims("ai-models/clustermodel/a", DIGEST, 0)


def test_the_grant_opens_its_manifest_and_its_blobs_only() -> None:
    check_scope(CLAIMS, Target(CLAIMS.repository, "manifests", DIGEST), None)
    check_scope(CLAIMS, Target(CLAIMS.repository, "blobs", BLOB), frozenset({BLOB}))
    refused = [
        (Target("ai-models/clustermodel/b", "manifests", DIGEST), None),
        (Target(CLAIMS.repository, "manifests", BLOB), None),
        (Target(CLAIMS.repository, "blobs", BLOB), frozenset({DIGEST})),
        (Target("ai-models/clustermodel/b", "blobs", BLOB), None),
    ]
    for target, blobs in refused:
        with pytest.raises(Refusal) as caught:
            check_scope(CLAIMS, target, blobs)
        assert (caught.value.status, caught.value.code) == (403, "DENIED")


def test_byte_ranges() -> None:
    assert byte_range("", 10) is None
    assert byte_range("bytes=3-", 10) == (3, 9)
    assert byte_range("bytes=3-5", 10) == (3, 5)
    assert byte_range("bytes=3-50", 10) == (3, 9)
    assert byte_range("bytes=-5", 10) is None
    assert byte_range("bytes=1-2,4-5", 10) is None
    for header in ("bytes=10-", "bytes=5-4"):
        with pytest.raises(Refusal) as caught:
            byte_range(header, 10)
        assert caught.value.status == 416


def test_cut_stops_at_the_length() -> None:
    assert list(cut(iter([b"abc", b"def", b"ghi"]), 5)) == [b"abc", b"de"]
    assert list(cut(iter([b"abc"]), 0)) == []
