"""The ModelPack builders: exact bytes, determinism, schema conformance, the field mapping."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from api.model import ResolvedMetadata
from api.protocol import MANIFEST_RESOLVED_ANNOTATION
from oci.digest import sha256_digest
from worker.oci.modelpack import (
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPE,
    Layer,
    build_config,
    build_manifest,
    manifest_annotations,
    param_size,
    precision_from_dtypes,
)
from worker.plan import PlannedFile, SourcePlan

DATA = Path(__file__).resolve().parents[3] / "data"
SCHEMA = json.loads((DATA / "modelpack-config-schema.json").read_text())
GOLDEN_MANIFEST = DATA / "oci" / "manifest-small.json"
GOLDEN_CONFIG = DATA / "oci" / "config-small.json"

WEIGHTS = "a" * 64
CONFIG = "b" * 64
README = "c" * 64
PLAN = SourcePlan(
    url="https://huggingface.co/org/tiny",
    source_type="HuggingFace",
    revision="0123456789abcdef0123456789abcdef01234567",
    name="tiny",
    format="Safetensors",
    files=(
        PlannedFile("model.safetensors", 1000, "weight", WEIGHTS),
        PlannedFile("config.json", 20, "config", CONFIG),
        PlannedFile("README.md", 5, "doc", README),
    ),
)
RESOLVED = ResolvedMetadata(
    architecture="LlamaForCausalLM",
    family="llama",
    format="Safetensors",
    parameter_count=134_515_008,
    context_window_tokens=8192,
    supported_endpoint_types=["Chat", "TextGeneration"],
    supported_features=["ToolCalling"],
)


def _layers(plan: SourcePlan = PLAN) -> list[Layer]:
    return [Layer(f.path, f.role, f"sha256:{f.sha256}", f.size) for f in plan.files]


def _artifact(
    plan: SourcePlan = PLAN, resolved: ResolvedMetadata = RESOLVED
) -> tuple[bytes, bytes]:
    layers = _layers(plan)
    config = build_config(plan, resolved, layers, precision="bf16")
    manifest = build_manifest(
        sha256_digest(config), len(config), layers, manifest_annotations(plan, resolved)
    )
    return config, manifest


def test_config_and_manifest_bytes_equal_the_golden_files() -> None:
    config, manifest = _artifact()
    assert config == GOLDEN_CONFIG.read_bytes().strip()
    assert manifest == GOLDEN_MANIFEST.read_bytes().strip()


def test_the_artifact_records_the_canonical_url_not_the_spelling() -> None:
    """Two spellings of one repository at one commit: one artifact (the user's spelling stays
    in the Model's spec)."""
    canonical = dataclasses.replace(PLAN, canonical_url=PLAN.url)
    spelled = dataclasses.replace(
        canonical, url="https://hf.co/org/tiny/tree/v1.0", canonical_url=PLAN.url
    )
    assert _artifact(spelled) == _artifact(canonical) == _artifact(PLAN)
    manifest = json.loads(_artifact(spelled)[1])
    assert manifest["annotations"]["org.opencontainers.image.source"] == PLAN.url
    assert json.loads(_artifact(spelled)[0])["descriptor"]["sourceURL"] == PLAN.url
    # Without a canonical URL (a local path) the URL as given is recorded.
    local = dataclasses.replace(PLAN, url="./models/tiny")
    assert json.loads(_artifact(local)[0])["descriptor"]["sourceURL"] == "./models/tiny"


def test_manifest_shape() -> None:
    _, manifest = _artifact()
    document = json.loads(manifest)
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == MANIFEST_MEDIA_TYPE
    assert document["artifactType"] == ARTIFACT_TYPE
    assert document["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["annotations"] for layer in document["layers"]] == [
        # the title is the file name `oras pull` writes (it writes no file without one)
        {"org.cncf.model.filepath": path, "org.opencontainers.image.title": path}
        for path in ("model.safetensors", "config.json", "README.md")
    ]
    assert json.loads(document["annotations"][MANIFEST_RESOLVED_ANNOTATION]) == RESOLVED.to_wire()
    assert document["annotations"]["org.opencontainers.image.revision"] == PLAN.revision


@pytest.mark.parametrize(
    ("role", "media_type"),
    [
        ("weight", "application/vnd.cncf.model.weight.v1.raw"),
        ("config", "application/vnd.cncf.model.weight.config.v1.raw"),
        ("doc", "application/vnd.cncf.model.doc.v1.raw"),
    ],
)
def test_layer_media_type_by_role(role: Any, media_type: str) -> None:
    assert LAYER_MEDIA_TYPES[role] == media_type
    manifest = build_manifest(
        "sha256:" + "0" * 64, 2, [Layer("f", role, "sha256:" + "1" * 64, 3)], {}
    )
    assert json.loads(manifest)["layers"][0]["mediaType"] == media_type


def test_same_inputs_give_the_same_bytes_and_no_clock_is_read() -> None:
    assert _artifact() == _artifact()
    config, manifest = _artifact()
    assert b"createdAt" not in config
    assert b"created" not in manifest


def test_diff_ids_are_the_layer_digests_in_plan_order() -> None:
    config, manifest = _artifact()
    diff_ids = json.loads(config)["modelfs"]["diffIds"]
    assert diff_ids == [layer["digest"] for layer in json.loads(manifest)["layers"]]
    assert diff_ids == [f"sha256:{f.sha256}" for f in PLAN.files]


def test_layer_order_changes_the_digest() -> None:
    reordered = SourcePlan(**{**PLAN.__dict__, "files": tuple(reversed(PLAN.files))})
    assert _artifact(reordered)[1] != _artifact()[1]


@pytest.mark.parametrize(
    "resolved",
    [
        RESOLVED,
        ResolvedMetadata(),
        ResolvedMetadata(format="GGUF", quantization="Q4_K_M", parameter_count=7),
        ResolvedMetadata(
            supported_endpoint_types=["Embeddings", "Rerank", "ImageGeneration", "SpeechToText"],
            supported_features=["VisionInput", "AudioOutput", "VideoInput", "MultiModalInput"],
        ),
    ],
)
def test_every_config_validates_against_the_official_schema(resolved: ResolvedMetadata) -> None:
    config, _ = _artifact(resolved=resolved)
    jsonschema.validate(json.loads(config), SCHEMA, cls=jsonschema.Draft202012Validator)


def test_config_field_mapping() -> None:
    config = json.loads(_artifact()[0])
    assert config["descriptor"] == {
        "name": "tiny",
        "family": "llama",
        "sourceURL": "https://huggingface.co/org/tiny",
        "revision": PLAN.revision,
    }
    assert config["config"] == {
        "architecture": "LlamaForCausalLM",
        "format": "safetensors",
        "paramSize": "134.5M",
        "precision": "bf16",
        "capabilities": {"inputTypes": ["text"], "outputTypes": ["text"], "toolUsage": True},
    }


def test_capabilities_from_endpoints_and_features() -> None:
    resolved = ResolvedMetadata(
        supported_endpoint_types=["Embeddings", "ImageToText"], supported_features=["VisionInput"]
    )
    config = json.loads(_artifact(resolved=resolved)[0])
    assert config["config"]["capabilities"] == {
        "inputTypes": ["text", "image"],
        "outputTypes": ["text", "embedding"],
        "toolUsage": False,
    }


def test_gguf_quantization_is_lower_case_and_unknowns_are_left_out() -> None:
    resolved = ResolvedMetadata(format="GGUF", quantization="Q4_1")
    config = json.loads(_artifact(resolved=resolved)[0])
    assert config["config"] == {"format": "gguf", "quantization": "q4_1", "precision": "bf16"}


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (22_713_216, "22.7M"),
        (134_515_008, "134.5M"),
        (135_000_000, "135M"),
        (7_241_732_096, "7.2B"),
        (70_000_000_000, "70B"),
        (999_960_000, "1B"),
        (1_500, "1.5K"),
        (7, "0.1K"),
        (1_000_000_000_000, "1T"),
    ],
)
def test_param_size(count: int, text: str) -> None:
    assert param_size(count) == text


@pytest.mark.parametrize(
    ("dtypes", "precision"),
    [
        ({"BF16": 990, "F32": 10}, "bf16"),
        ({"F16": 100}, "fp16"),
        ({"F32": 100}, "fp32"),
        ({"F8_E4M3": 96, "BF16": 4}, "fp8"),
        ({"BF16": 60, "F32": 40}, "mixed"),
        ({"I8": 100}, "int8"),
        ({}, None),
    ],
)
def test_precision_from_dtypes(dtypes: dict[str, int], precision: str | None) -> None:
    assert precision_from_dtypes(dtypes) == precision


def test_a_config_needs_a_layer() -> None:
    with pytest.raises(ValueError, match="at least one layer"):
        build_config(PLAN, RESOLVED, [])
