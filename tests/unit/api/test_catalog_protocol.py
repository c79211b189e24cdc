"""Catalog protocol v1: the bodies' bounds, and docs/schemas/ equal to what the models generate
and agreeing with them on example bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from api.catalog_protocol import (
    ANNOTATION_CATALOG_VERSION,
    LABEL_CATALOG_PUBLISH,
    PUBLISH_SELECTOR,
    CatalogPage,
    ErrorBody,
    Grant,
    GrantRequest,
)
from catalog.schemas import SCHEMAS, rendered

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "docs" / "schemas"
DIGEST = "sha256:" + "0123456789abcdef" * 4
ENTRY = {
    "name": "llama-3.1-8b",
    "version": "1",
    "active": True,
    "repository": "catalog.example.com:8443/ai-models/clustermodel/llama-3.1-8b",
    "digest": DIGEST,
    "artifactType": "application/vnd.cncf.model.manifest.v1+json",
    "sizeBytes": 16_000_000_000,
    "resolved": {"format": "Safetensors", "parameterCount": 8_000_000_000},
}
PAGE = {
    "apiVersion": "catalog.ai.deckhouse.io/v1",
    "revision": "0123456789abcdef",
    "entries": [ENTRY],
    "nextPageToken": None,
}
GRANT = {
    "registry": "catalog.example.com:8443",
    "repository": "ai-models/clustermodel/llama-3.1-8b",
    "token": "g1.abc.def",
    "expiresAt": "2026-01-01T00:10:00Z",
}
REQUEST = {"name": "llama-3.1-8b", "version": "1", "digest": DIGEST}
ERROR = {"code": "RevisionChanged", "message": "start over"}
EXAMPLES: dict[str, dict[str, Any]] = {
    "catalog-v1.schema.json": PAGE,
    "grant-v1.schema.json": GRANT,
    "grant-request-v1.schema.json": REQUEST,
    "error-v1.schema.json": ERROR,
}


def validate(filename: str, body: object) -> None:
    schema = json.loads((SCHEMA_DIR / filename).read_text())
    jsonschema.Draft202012Validator(schema).validate(body)


@pytest.mark.parametrize("filename", sorted(SCHEMAS))
def test_the_committed_schema_is_what_the_models_generate(filename: str) -> None:
    assert (SCHEMA_DIR / filename).read_text() == rendered(filename), (
        "run: python -m catalog.schemas docs/schemas"
    )


@pytest.mark.parametrize("filename", sorted(EXAMPLES))
def test_examples_pass_both_the_schema_and_the_model(filename: str) -> None:
    body = EXAMPLES[filename]
    validate(filename, body)
    SCHEMAS[filename].model_validate(body)


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(body))
    target: Any = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


BAD = [
    ("catalog-v1.schema.json", _with(PAGE, ("revision",), "has space")),
    ("catalog-v1.schema.json", _with(PAGE, ("revision",), "r" * 129)),
    ("catalog-v1.schema.json", _with(PAGE, ("apiVersion",), "catalog.ai.deckhouse.io/v2")),
    ("catalog-v1.schema.json", _with(PAGE, ("entries", 0, "digest"), "sha256:abc")),
    ("catalog-v1.schema.json", _with(PAGE, ("entries", 0, "name"), "Upper")),
    ("catalog-v1.schema.json", _with(PAGE, ("entries", 0, "sizeBytes"), -1)),
    ("catalog-v1.schema.json", _with(PAGE, ("entries", 0, "repository"), "no-host-path")),
    ("catalog-v1.schema.json", _with(PAGE, ("entries", 0, "version"), "")),
    ("catalog-v1.schema.json", _with(PAGE, ("entries", 0, "resolved"), {"x": 1})),
    ("grant-v1.schema.json", _with(GRANT, ("registry",), "https://host")),
    ("grant-v1.schema.json", _with(GRANT, ("repository",), "/abs")),
    ("grant-v1.schema.json", _with(GRANT, ("token",), "")),
    ("grant-request-v1.schema.json", _with(REQUEST, ("extra",), 1)),
    ("grant-request-v1.schema.json", _with(REQUEST, ("digest",), "md5:00")),
    ("error-v1.schema.json", _with(ERROR, ("code",), "")),
]


@pytest.mark.parametrize(("filename", "body"), BAD)
def test_bad_bodies_fail_both_the_schema_and_the_model(filename: str, body: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(filename, body)
    with pytest.raises(ValidationError):
        SCHEMAS[filename].model_validate(body)


def test_responses_tolerate_unknown_fields_and_requests_do_not() -> None:
    assert CatalogPage.model_validate({**PAGE, "future": 1}).revision == PAGE["revision"]
    assert Grant.model_validate({**GRANT, "future": 1}).token == GRANT["token"]
    assert ErrorBody.model_validate({**ERROR, "details": []}).code == "RevisionChanged"
    with pytest.raises(ValidationError):
        GrantRequest.model_validate({**REQUEST, "future": 1})


def test_a_grant_needs_an_expiry_with_a_time_zone() -> None:
    with pytest.raises(ValidationError):
        Grant.model_validate({**GRANT, "expiresAt": "2026-01-01T00:10:00"})


def test_the_publish_keys_are_under_the_group() -> None:
    assert LABEL_CATALOG_PUBLISH == "ai.deckhouse.io/catalog"
    assert PUBLISH_SELECTOR == "ai.deckhouse.io/catalog=publish"
    assert ANNOTATION_CATALOG_VERSION == "ai.deckhouse.io/catalog-version"
