"""Generates the CustomResourceDefinitions in ``crds/`` from the pydantic API models.

The pydantic JSON Schema is close to, but not, a Kubernetes structural schema: it uses ``$ref``,
``anyOf: [X, null]`` for optional fields, titles and ``additionalProperties: false``. This module
inlines references, collapses optionals, keeps only the OpenAPI keywords the API server enforces
(type, format, description, pattern, lengths, minimum, enum, required) plus the CEL rules the
models carry, and adds what only a CRD has: names, scope, the status subresource, printer columns.

    python -m api.crdgen            # rewrite crds/ and the chart's copy, helm/ai-models/crds/
    python -m api.crdgen --check    # exit 1 when either differs from what the models generate
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from api.catalog import ModelCatalogSource
from api.meta import GROUP, VERSION
from api.model import ClusterModel, Model
from api.protocol import ANNOTATION_CLUSTER_MODEL, ANNOTATION_MODEL

KEPT_KEYWORDS = (
    "type",
    "format",
    "description",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "enum",
    "required",
    "x-kubernetes-validations",
)
KIND_DESCRIPTIONS = {
    "Model": (
        "Model describes one namespace-scoped model prepared from a remote source, upload "
        "session, or external catalog. Workloads in the same namespace consume it with the "
        f"top-level annotation {ANNOTATION_MODEL} after the model gets status.phase=Ready."
    ),
    "ClusterModel": (
        "ClusterModel describes one cluster-scoped shared model prepared from a remote source or "
        "external catalog. Workloads consume it with the top-level annotation "
        f"{ANNOTATION_CLUSTER_MODEL} after the model gets status.phase=Ready."
    ),
    "ModelCatalogSource": (
        "ModelCatalogSource describes an external ClusterModel catalog. The controller can import "
        "selected entries as local Model or ClusterModel objects."
    ),
}
API_VERSION_DESCRIPTION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized values."
)
KIND_FIELD_DESCRIPTION = (
    "Kind is a string value representing the REST resource this object represents. Servers may "
    "infer this from the endpoint the client submits requests to. In CamelCase."
)
READY_REASON = '.status.conditions[?(@.type=="Ready")].reason'
MODEL_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Format", "type": "string", "jsonPath": ".status.resolved.format"},
    {"name": "Parameters", "type": "integer", "jsonPath": ".status.resolved.parameterCount"},
    {"name": "Size", "type": "integer", "jsonPath": ".status.artifact.sizeBytes"},
    {"name": "Reason", "type": "string", "jsonPath": READY_REASON},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
CATALOG_COLUMNS: list[dict[str, Any]] = [
    {"name": "URL", "type": "string", "jsonPath": ".spec.url", "priority": 1},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Entries", "type": "integer", "jsonPath": ".status.entryCount"},
    {"name": "Revision", "type": "string", "jsonPath": ".status.catalogRevision"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


@dataclass(frozen=True)
class CrdSpec:
    model: type[BaseModel]
    kind: str
    plural: str
    scope: str
    short_names: tuple[str, ...]
    columns: list[dict[str, Any]]

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


CRDS = (
    CrdSpec(Model, "Model", "models", "Namespaced", ("mdl",), MODEL_COLUMNS),
    CrdSpec(ClusterModel, "ClusterModel", "clustermodels", "Cluster", ("cmdl",), MODEL_COLUMNS),
    CrdSpec(
        ModelCatalogSource,
        "ModelCatalogSource",
        "modelcatalogsources",
        "Cluster",
        ("mcs",),
        CATALOG_COLUMNS,
    ),
)


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Turns one pydantic JSON Schema node into a Kubernetes structural schema node."""
    node = _flatten(node, defs)
    if "const" in node:  # a one-value Literal
        node["enum"] = [node.pop("const")]
    out: dict[str, Any] = {key: node[key] for key in KEPT_KEYWORDS if key in node}
    if "properties" in node:
        out["properties"] = {
            name: structural(child, defs) for name, child in node["properties"].items()
        }
    if "items" in node:
        out["items"] = structural(node["items"], defs)
    if out.get("type") == "object" and not out.get("properties"):
        out.pop("properties", None)
    return dict(sorted(out.items(), key=lambda kv: _key_order(kv[0])))


def _flatten(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Resolves ``$ref`` and optional ``anyOf`` until the node carries its own keywords.

    Keywords beside a reference (the field's description) win over the referenced model's own;
    a model's docstring never becomes a CRD description.
    """
    node = dict(node)
    while True:
        if "$ref" in node:
            target = dict(defs[node.pop("$ref").rsplit("/", 1)[-1]])
            target.pop("description", None)
            node = {**target, **node}
        elif "anyOf" in node:
            options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"unsupported union in the API models: {options}")
            node = {**options[0], **node}
        else:
            return node


def _key_order(key: str) -> tuple[int, str]:
    order = ("description", "type", "format", "enum", "pattern", "minLength", "maxLength")
    return (order.index(key), key) if key in order else (len(order), key)


def build_crd(spec: CrdSpec) -> dict[str, Any]:
    schema = spec.model.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    properties = schema["properties"]
    openapi = {
        "description": KIND_DESCRIPTIONS[spec.kind],
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "kind": {"description": KIND_FIELD_DESCRIPTION, "type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(properties["spec"], defs),
            "status": structural(properties["status"], defs),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{spec.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": spec.kind,
                "listKind": f"{spec.kind}List",
                "plural": spec.plural,
                "singular": spec.kind.lower(),
                "shortNames": list(spec.short_names),
                "categories": ["ai-models"],
            },
            "scope": spec.scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": spec.columns,
                    "schema": {"openAPIV3Schema": openapi},
                }
            ],
        },
    }


DEFAULT_OUTPUTS = (Path("crds"), Path("helm/ai-models/crds"))
HEADER = "# Generated by `python -m api.crdgen` from the pydantic models in api/. Do not edit.\n"


def render(spec: CrdSpec) -> str:
    body = yaml.safe_dump(build_crd(spec), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.crdgen", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        help="output directory (repeatable; default: crds and helm/ai-models/crds)",
    )
    parser.add_argument("--check", action="store_true", help="fail when the files differ")
    args = parser.parse_args(argv)
    stale = []
    for out in args.out or DEFAULT_OUTPUTS:
        for spec in CRDS:
            path: Path = out / spec.file_name
            text = render(spec)
            if args.check:
                if not path.is_file() or path.read_text() != text:
                    stale.append(str(path))
                continue
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale CRDs (run `python -m api.crdgen`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
