"""What the catalog publishes: entries from ClusterModels, the revision, pages and their tokens."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from api.model import ResolvedMetadata
from catalog.listing import (
    BadPageToken,
    Published,
    RevisionChanged,
    page,
    page_token,
    parse_page_token,
    published,
    revision,
)

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def _item(name: str, version: str = "1", digest: str = DIGEST_A) -> Published:
    return Published(
        name, version, f"ai-models/clustermodel/{name}", digest, 10, ResolvedMetadata()
    )


def _object(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "llama", "uid": "u1", "annotations": {}},
        "status": {
            "phase": "Ready",
            "artifact": {"kind": "OCI", "digest": DIGEST_A, "sizeBytes": 42},
            "resolved": {"format": "Safetensors", "parameterCount": 7},
        },
    }
    obj.update(overrides)
    return obj


def test_revision_is_sha256_of_the_sorted_triples_first_16_hex() -> None:
    items = [_item("b", "2", DIGEST_B), _item("a")]
    triples = [["a", "1", DIGEST_A], ["b", "2", DIGEST_B]]
    expected = hashlib.sha256(json.dumps(triples, separators=(",", ":")).encode()).hexdigest()
    assert revision(items) == expected[:16]
    assert revision(list(reversed(items))) == expected[:16]


def test_revision_changes_with_a_digest_and_not_with_size_or_metadata() -> None:
    base = revision([_item("a")])
    assert revision([_item("a", digest=DIGEST_B)]) != base
    assert revision([_item("a", version="2")]) != base
    other = Published("a", "1", "elsewhere/a", DIGEST_A, 99, ResolvedMetadata(family="x"))
    assert revision([other]) == base


def test_a_ready_clustermodel_is_published_with_its_status() -> None:
    item = published(_object(), "ai-models/clustermodel/llama")
    assert item is not None
    entry = item.entry("catalog.example.com:8443")
    assert entry.to_wire() == {
        "name": "llama",
        "version": "1",
        "active": True,
        "repository": "catalog.example.com:8443/ai-models/clustermodel/llama",
        "digest": DIGEST_A,
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "sizeBytes": 42,
        "resolved": {"format": "Safetensors", "parameterCount": 7},
    }


def test_the_version_annotation_names_the_version() -> None:
    meta = {"name": "llama", "annotations": {"ai.deckhouse.io/catalog-version": "2025-01"}}
    item = published(_object(metadata=meta), "r/llama")
    assert item is not None
    assert item.version == "2025-01"


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Pending"},
        {"phase": "Ready"},
        {"phase": "Ready", "artifact": {"digest": "sha256:short"}},
        {"phase": "Ready", "artifact": {"digest": DIGEST_A}, "resolved": {"unknown": 1}},
    ],
)
def test_what_is_not_ready_or_unusable_is_left_out(status: dict[str, Any]) -> None:
    assert published(_object(status=status), "r/llama") is None


def test_an_overlong_version_is_left_out() -> None:
    meta = {"name": "llama", "annotations": {"ai.deckhouse.io/catalog-version": "v" * 129}}
    assert published(_object(metadata=meta), "r/llama") is None


def test_pages_walk_the_catalog_in_name_order_under_one_revision() -> None:
    items = [_item("c"), _item("a"), _item("b")]
    rev, first, token = page(items, 2, None)
    assert [i.name for i in first] == ["a", "b"]
    assert token is not None
    rev2, second, token2 = page(items, 2, token)
    assert (rev2, [i.name for i in second], token2) == (rev, ["c"], None)


def test_an_exact_last_page_has_no_next_token() -> None:
    assert page([_item("a"), _item("b")], 2, None)[2] is None


def test_a_token_of_another_revision_is_revision_changed() -> None:
    _, _, token = page([_item("a"), _item("b")], 1, None)
    assert token is not None
    with pytest.raises(RevisionChanged):
        page([_item("a"), _item("b", digest=DIGEST_B)], 1, token)


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"r": "x", "o": -1}').decode(),
        base64.urlsafe_b64encode(b'{"r": "x", "o": true}').decode(),
        base64.urlsafe_b64encode(b'{"r": "x", "o": 1, "z": 0}').decode(),
        "A" * 513,
    ],
)
def test_a_forged_or_malformed_token_is_bad(token: str) -> None:
    with pytest.raises(BadPageToken):
        parse_page_token(token)


def test_a_token_past_the_end_is_bad() -> None:
    items = [_item("a")]
    with pytest.raises(BadPageToken):
        page(items, 1, page_token(revision(items), 5))


def test_page_tokens_round_trip() -> None:
    assert parse_page_token(page_token("abc", 7)) == ("abc", 7)
