"""The catalog import's source side: the ``catalog+oci://`` form, the grant file, its renewal
against a fake catalog (no redirect followed, the token never in a message), and the resolved
metadata read from the manifest annotation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from api.catalog_import import (
    GrantFile,
    InvalidGrantFile,
    catalog_worker_source,
    parse_grant_file,
)
from api.protocol import MANIFEST_RESOLVED_ANNOTATION
from tests.unit.oci.fakes import FakeTransport
from worker.errors import (
    CatalogDigestMismatch,
    CatalogUnauthorized,
    InvalidSource,
    SourceNotFound,
    SourceUnavailable,
    WorkerError,
)
from worker.sources import open_source
from worker.sources.catalog import CatalogGrants, load_grant_file, resolved_from
from worker.sources.settings import SourceSettings
from worker.sources.spec import CatalogSpec, parse_source

DIGEST = "sha256:" + "ab" * 32
GRANT = GrantFile(
    registry="catalog.example:8443", repository="ai-models/cluster/tiny", token="grant-token-1",
    expires_at="2099-01-01T00:00:00Z", catalog_url="https://catalog.example:8443",
    catalog_token="catalog-secret", ca_file="ca.crt", name="tiny", version="1", digest=DIGEST,
)  # fmt: skip


def test_the_catalog_form_parses_and_is_not_a_readable_source() -> None:
    spec = catalog_worker_source("catalog.example:8443", "ai-models/cluster/tiny", DIGEST)
    assert spec == f"catalog+oci://catalog.example:8443/ai-models/cluster/tiny@{DIGEST}"
    parsed = parse_source(spec)
    assert parsed == CatalogSpec(spec, "catalog.example:8443", "ai-models/cluster/tiny", DIGEST)
    with pytest.raises(InvalidSource, match="copied by digest by prepare"):
        open_source(spec, SourceSettings())


@pytest.mark.parametrize(
    "spec",
    [
        "catalog+oci://host/repo@sha256:" + "a" * 63,  # short digest
        "catalog+oci://host/repo:tag",  # a tag, not a digest
        "catalog+oci://host@" + DIGEST,  # no repository
        "catalog+oci://user@host/repo@" + DIGEST,  # userinfo
        "catalog+oci://host/Repo@" + DIGEST,  # upper case repository
        "catalog+oci://host/repo@" + DIGEST + "?x=1",
    ],
)
def test_malformed_catalog_sources_are_invalid(spec: str) -> None:
    with pytest.raises(InvalidSource, match="catalog"):
        parse_source(spec)


def test_the_grant_file_round_trips_and_hides_its_tokens() -> None:
    text = GRANT.to_json()
    assert json.loads(text)["catalogURL"] == "https://catalog.example:8443"
    assert parse_grant_file(text.encode()) == GRANT
    assert "grant-token-1" not in repr(GRANT)
    assert "catalog-secret" not in repr(GRANT)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"catalogURL": "http://catalog.example"}, "catalogURL"),
        ({"digest": "sha256:00"}, "digest"),
        ({"token": ""}, "token"),
        ({"repository": "../etc"}, "repository"),
    ],
)
def test_a_malformed_grant_file_names_the_field_not_the_value(
    change: dict[str, str], where: str
) -> None:
    document = json.loads(GRANT.to_json()) | change
    with pytest.raises(InvalidGrantFile, match=f"malformed at {where}") as caught:
        parse_grant_file(json.dumps(document).encode())
    assert "catalog-secret" not in str(caught.value)


def test_a_missing_grant_file_is_invalid_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidSource, match="cannot be read"):
        load_grant_file(tmp_path / "grant.json")
    (tmp_path / "grant.json").write_text(GRANT.to_json())
    grant, ca = load_grant_file(tmp_path / "grant.json")
    assert (grant, ca) == (GRANT, tmp_path / "ca.crt")


def _grants(status: int, body: object, headers: dict[str, str] | None = None) -> tuple[
    CatalogGrants, FakeTransport
]:  # fmt: skip
    data = json.dumps(body).encode()
    transport = FakeTransport(lambda request: (status, headers or {}, data))
    session = requests.Session()
    session.mount("https://", transport)
    return CatalogGrants(GRANT, None, session), transport


def test_renewal_posts_the_entry_with_the_catalog_token() -> None:
    answer = {"registry": GRANT.registry, "repository": GRANT.repository, "token": "grant-2",
              "expiresAt": "2099-01-02T00:00:00Z", "future": "ignored"}  # fmt: skip
    grants, transport = _grants(201, answer)
    fresh = grants.renew(grants.current)
    assert fresh.token == "grant-2"
    assert fresh.catalog_token == "catalog-secret"
    assert grants.renewals == 1
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", "https://catalog.example:8443/v1/grants")
    assert sent.headers["Authorization"] == "Bearer catalog-secret"
    assert json.loads(sent.body or b"") == {"name": "tiny", "version": "1", "digest": DIGEST}
    assert grants.renew(GRANT) is fresh  # a stale grant another thread renewed: no request
    assert len(transport.requests) == 1


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (401, CatalogUnauthorized, "refused \\(401\\)"),
        (404, SourceNotFound, "no longer has this entry"),
        (409, CatalogDigestMismatch, "no longer sha256:"),
        (302, CatalogUnauthorized, "redirect"),
        (503, SourceUnavailable, "answered 503"),
        (201, SourceUnavailable, "not a grant"),
    ],
)
def test_refused_renewals_are_named(status: int, error: type[WorkerError], match: str) -> None:
    grants, transport = _grants(status, {"code": "X"}, {"Location": "https://elsewhere/"})
    with pytest.raises(error, match=match) as caught:
        grants.renew(GRANT)
    assert "catalog-secret" not in caught.value.message
    assert len(transport.requests) == 1  # a redirect is not followed


def test_a_grant_for_another_repository_is_refused() -> None:
    answer = {"registry": GRANT.registry, "repository": "other/repo", "token": "t",
              "expiresAt": "2099-01-02T00:00:00Z"}  # fmt: skip
    grants, _ = _grants(201, answer)
    with pytest.raises(CatalogUnauthorized, match="another repository"):
        grants.renew(GRANT)
    assert grants.current is GRANT


def _manifest(annotations: dict[str, str]) -> bytes:
    return json.dumps({"schemaVersion": 2, "annotations": annotations}).encode()


def test_resolved_metadata_comes_from_the_annotation() -> None:
    good = json.dumps({"format": "GGUF", "architecture": "llama", "parameterCount": 7})
    resolved, note = resolved_from(_manifest({MANIFEST_RESOLVED_ANNOTATION: good}), "here")
    assert resolved.to_wire() == {"format": "GGUF", "architecture": "llama", "parameterCount": 7}
    assert note is None


@pytest.mark.parametrize(
    ("annotations", "note"),
    [
        ({}, "has no ai.deckhouse.io/resolved annotation"),
        ({MANIFEST_RESOLVED_ANNOTATION: '{"format": "Pickle"}'}, "invalid at format"),
        ({MANIFEST_RESOLVED_ANNOTATION: "not json"}, "invalid at the document"),
    ],
)
def test_missing_or_invalid_metadata_stays_unknown_with_a_note(
    annotations: dict[str, str], note: str
) -> None:
    resolved, found = resolved_from(_manifest(annotations), "here")
    assert resolved.to_wire() == {}
    assert found is not None
    assert note in found
