"""The pydantic API models: samples parse, the same rules as the CRDs hold in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from api.catalog import ModelCatalogSource
from api.model import ClusterModel, Model, ModelStatus, parse_model

REPO = Path(__file__).resolve().parents[3]
KINDS: dict[str, Any] = {
    "Model": Model,
    "ClusterModel": ClusterModel,
    "ModelCatalogSource": ModelCatalogSource,
}


def sample_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted((REPO / "samples").glob("*.yaml")):
        objects += [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] in KINDS]
    return objects


@pytest.mark.parametrize(
    "obj", sample_objects(), ids=lambda o: f"{o['kind']}-{o['metadata']['name']}"
)
def test_sample_round_trips(obj: dict[str, Any]) -> None:
    parsed = KINDS[obj["kind"]].model_validate(obj)
    assert parsed.to_wire() == obj


def hf_model(**source: Any) -> dict[str, Any]:
    return {"metadata": {"name": "m"}, "spec": {"source": source}}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"url": "http://huggingface.co/a/b"}, "String should match pattern"),
        ({"url": "https://ollama.com/smollm2"}, "String should match pattern"),
        (
            {"url": "https://huggingface.co/a", "upload": {}},
            "exactly one of url, upload or catalog",
        ),
        ({}, "exactly one of url, upload or catalog"),
        ({"upload": {}, "authSecretRef": {"name": "t"}}, "only together with a Hugging Face url"),
        ({"catalog": {"name": "Upper"}}, "String should match pattern"),
        ({"catalog": {"name": "a" * 254}}, "at most 253 characters"),
        ({"url": "https://huggingface.co/a", "extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_source_rejected(source: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Model.model_validate(hf_model(**source))


def test_url_forms_accepted() -> None:
    for url in (
        "https://huggingface.co/org/repo",
        "https://www.huggingface.co/org/repo/tree/v1.0",
        "https://hf.co/org/repo?revision=abc",
        "https://ollama.com/library/smollm2",
        "https://www.ollama.com/library/smollm2:135m",
    ):
        assert Model.model_validate(hf_model(url=url)).spec.source.url == url


def test_auth_secret_ref_allowed_with_hugging_face() -> None:
    parsed = Model.model_validate(
        hf_model(url="https://hf.co/org/private", authSecretRef={"name": "tok"})
    )
    assert parsed.spec.source.auth_secret_ref is not None
    assert parsed.spec.source.auth_secret_ref.name == "tok"


def test_parse_model_dispatches_on_kind() -> None:
    cluster = parse_model({"kind": "ClusterModel", **hf_model(url="https://hf.co/a/b")})
    assert isinstance(cluster, ClusterModel)
    assert isinstance(parse_model(hf_model(url="https://hf.co/a/b")), Model)


def test_status_rejects_what_the_crd_rejects() -> None:
    with pytest.raises(ValidationError, match="phase"):
        ModelStatus.model_validate({"phase": "Bogus"})
    with pytest.raises(ValidationError, match=r"parameterCount|parameter_count"):
        ModelStatus.model_validate({"resolved": {"parameterCount": 0}})
    with pytest.raises(ValidationError, match="reason"):
        ModelStatus.model_validate(
            {"conditions": [{"type": "Ready", "status": "True", "reason": "a b"}]}
        )
