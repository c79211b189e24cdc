"""The generated CRDs match the API reference field for field, and the committed ones are fresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from api import crdgen
from tests.unit.api.reference import ReferenceField, normalize, parse_reference

REPO = Path(__file__).resolve().parents[3]
REFERENCE = parse_reference()
SPECS = {spec.kind: spec for spec in crdgen.CRDS}
TYPE_OF = {
    "string": ("string", None),
    "object": ("object", None),
    "integer": ("integer", None),
    "boolean": ("boolean", None),
    "array of objects": ("array", "object"),
    "array of strings": ("array", "string"),
}


# Deliberate, documented deviations from the reference (docs/api.md, "Deviations").
REQUIRED_BEYOND_REFERENCE = {"spec"}


def schema_of(kind: str) -> dict[str, Any]:
    crd = crdgen.build_crd(SPECS[kind])
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def lookup(schema: dict[str, Any], path: str) -> tuple[dict[str, Any], bool]:
    """The schema node at a reference path and whether its parent requires it."""
    node, required = schema, False
    for part in path.split("."):
        if node.get("type") == "array":
            node = node["items"]
        if part == "Element of the array":
            continue
        required = part in node.get("required", [])
        node = node["properties"][part]
    return node, required


def reference_fields() -> list[tuple[str, ReferenceField]]:
    return [(kind, f) for kind, ref in REFERENCE.items() for f in ref.fields.values()]


def test_reference_lists_the_three_kinds() -> None:
    assert {k: (r.scope, len(r.fields)) for k, r in REFERENCE.items()} == {
        "ClusterModel": ("Cluster", 54),
        "Model": ("Namespaced", 56),
        "ModelCatalogSource": ("Cluster", 17),
    }


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_scope_and_kind_description(kind: str) -> None:
    crd = crdgen.build_crd(SPECS[kind])
    assert crd["spec"]["scope"] == REFERENCE[kind].scope
    assert normalize(schema_of(kind)["description"]) == REFERENCE[kind].description


@pytest.mark.parametrize(
    ("kind", "field"), reference_fields(), ids=lambda v: v if isinstance(v, str) else v.path
)
def test_field_matches_reference(kind: str, field: ReferenceField) -> None:
    node, required = lookup(schema_of(kind), field.path)
    crd_type, item_type = TYPE_OF[field.type]
    assert node["type"] == crd_type
    if item_type:
        assert node["items"]["type"] == item_type
    assert required is (field.required or field.path in REQUIRED_BEYOND_REFERENCE)
    assert normalize(node.get("description", "")) == field.description
    assert node.get("minLength") == field.min_length
    assert node.get("maxLength") == field.max_length
    assert node.get("pattern") == field.pattern
    assert node.get("minimum") == field.minimum
    assert node.get("enum") == field.enum


def crd_paths(node: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    if node.get("type") == "array":
        item = node["items"]
        if "properties" not in item:
            return [f"{prefix}.Element of the array"]
        node = item
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.append(path)
        paths.extend(crd_paths(child, path))
    return paths


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_crd_has_no_field_the_reference_lacks(kind: str) -> None:
    generated = set(crd_paths(schema_of(kind))) - {"apiVersion", "kind", "metadata"}
    assert generated == set(REFERENCE[kind].fields)


def test_committed_crds_are_what_the_models_generate() -> None:
    for directory in ("crds", "helm/ai-models/crds"):
        for spec in crdgen.CRDS:
            committed = (REPO / directory / spec.file_name).read_text()
            assert committed == crdgen.render(spec), f"run `python -m api.crdgen`: {spec.file_name}"


def test_check_mode_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    stale = tmp_path / SPECS["Model"].file_name
    stale.write_text(stale.read_text().replace("maxLength: 253", "maxLength: 254", 1))
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert "ai.deckhouse.io_models.yaml" in capsys.readouterr().err


def test_cel_rules_on_spec_source() -> None:
    rules = {
        kind: [
            r["rule"] for r in lookup(schema_of(kind), "spec.source")[0]["x-kubernetes-validations"]
        ]
        for kind in ("Model", "ClusterModel")
    }
    assert rules["ClusterModel"] == [
        "self == oldSelf",
        "[has(self.url), has(self.upload), has(self.catalog)].filter(x, x).size() == 1",
    ]
    assert rules["Model"][:2] == rules["ClusterModel"]
    assert rules["Model"][2].startswith("!has(self.authSecretRef) || (has(self.url) && (")


def test_printer_columns_and_short_names() -> None:
    crd = yaml.safe_load((REPO / "crds" / "ai.deckhouse.io_models.yaml").read_text())
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Progress",
        "Format",
        "Parameters",
        "Size",
        "Reason",
        "Age",
    ]
    # Every column is a default one: the reason of a Failed model shows without `-o wide`.
    assert [c.get("priority", 0) for c in version["additionalPrinterColumns"]] == [0] * 7
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["shortNames"] == ["mdl"]
