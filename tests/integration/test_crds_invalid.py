"""Bad input is rejected by the real API server, and its own error names the offending field.

Each case is a manifest (or a status written through the status subresource) that breaks one
rule of the API reference; the expected text is the field path plus the rule's wording as the
API server prints it through kubectl.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.ground.controlplane import ControlPlane

NAMESPACE = "crd-validation"
HF = "https://huggingface.co/org/repo"
PATTERN = "should match"


def model(source: dict[str, Any] | None, kind: str = "Model", name: str = "bad") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
    }
    if source is not None:
        obj["spec"] = {"source": source}
    return obj


def catalog_source(**spec: Any) -> dict[str, Any]:
    base = {"url": "https://catalog.example.com", "credentialsSecretName": "creds"}
    base.update(spec)
    return {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "ModelCatalogSource",
        "metadata": {"name": "bad"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


@dataclass(frozen=True)
class Case:
    id: str
    manifest: dict[str, Any]
    field: str
    rule: str


EXACTLY_ONE = "exactly one of url, upload or catalog must be set"
CASES = [
    Case("http-url", model({"url": "http://huggingface.co/org/repo"}), "spec.source.url", PATTERN),
    Case("github-url", model({"url": "https://github.com/org/repo"}), "spec.source.url", PATTERN),
    Case(
        "ollama-not-library",
        model({"url": "https://ollama.com/smollm2"}),
        "spec.source.url",
        PATTERN,
    ),
    Case(
        "huggingface-no-path", model({"url": "https://huggingface.co/"}), "spec.source.url", PATTERN
    ),
    Case("empty-url", model({"url": ""}), "spec.source.url", "should be at least 1 chars long"),
    Case(
        "uppercase-catalog-name",
        model({"catalog": {"name": "Qwen"}}),
        "spec.source.catalog.name",
        PATTERN,
    ),
    Case(
        "catalog-name-too-long",
        model({"catalog": {"name": "a" * 254}}),
        "spec.source.catalog.name",
        "Too long: may not be more than 253",
    ),
    Case(
        "catalog-version-too-long",
        model({"catalog": {"name": "qwen", "version": "v" * 129}}),
        "spec.source.catalog.version",
        "Too long: may not be more than 128",
    ),
    Case(
        "catalog-without-name",
        model({"catalog": {"version": "1"}}),
        "spec.source.catalog.name",
        "Required value",
    ),
    Case(
        "uppercase-source-name",
        model({"catalog": {"name": "qwen", "sourceName": "Corp"}}),
        "spec.source.catalog.sourceName",
        PATTERN,
    ),
    Case("url-and-upload", model({"url": HF, "upload": {}}), "spec.source", EXACTLY_ONE),
    Case(
        "url-and-catalog", model({"url": HF, "catalog": {"name": "q"}}), "spec.source", EXACTLY_ONE
    ),
    Case("no-source-kind", model({}), "spec.source", EXACTLY_ONE),
    Case(
        "cluster-upload-and-catalog",
        model({"upload": {}, "catalog": {"name": "q"}}, kind="ClusterModel"),
        "spec.source",
        EXACTLY_ONE,
    ),
    Case("no-spec", model(None), "spec", "Required value"),
    Case(
        "auth-secret-with-upload",
        model({"upload": {}, "authSecretRef": {"name": "tok"}}),
        "spec.source.authSecretRef",
        "authSecretRef is supported only together with a Hugging Face url",
    ),
    Case(
        "auth-secret-with-ollama",
        model({"url": "https://ollama.com/library/smollm2", "authSecretRef": {"name": "tok"}}),
        "spec.source.authSecretRef",
        "authSecretRef is supported only together with a Hugging Face url",
    ),
    Case(
        "auth-secret-empty-name",
        model({"url": HF, "authSecretRef": {"name": ""}}),
        "spec.source.authSecretRef.name",
        "should be at least 1 chars long",
    ),
    Case(
        "cluster-model-has-no-auth-secret",
        model({"url": HF, "authSecretRef": {"name": "tok"}}, kind="ClusterModel"),
        "spec.source.authSecretRef",
        "unknown field",
    ),
    Case("catalog-url-userinfo", catalog_source(url="https://u@host.example"), "spec.url", PATTERN),
    Case(
        "catalog-url-query", catalog_source(url="https://host.example/v?x=1"), "spec.url", PATTERN
    ),
    Case("catalog-url-http", catalog_source(url="http://host.example"), "spec.url", PATTERN),
    Case(
        "catalog-url-short",
        catalog_source(url="https://"),
        "spec.url",
        "should be at least 9 chars long",
    ),
    Case("catalog-no-url", catalog_source(url=None), "spec.url", "Required value"),
    Case(
        "catalog-no-credentials",
        catalog_source(credentialsSecretName=None),
        "spec.credentialsSecretName",
        "Required value",
    ),
    Case(
        "catalog-ca-uppercase", catalog_source(caSecretName="My-CA"), "spec.caSecretName", PATTERN
    ),
]


@pytest.fixture(scope="module")
def namespace(crds: ControlPlane) -> str:
    crds.kubectl_run("create", "namespace", NAMESPACE)
    return NAMESPACE


def assert_rejected(result: Any, field: str, rule: str) -> None:
    assert result.returncode != 0, f"accepted: {result.stdout}"
    message = result.stderr
    assert f"{field}: " in message or f'"{field}"' in message, message
    assert rule in message, message


def test_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_manifest_rejected(crds: ControlPlane, namespace: str, case: Case) -> None:
    result = crds.kubectl_run("create", "-n", namespace, "-f", "-", stdin=json.dumps(case.manifest))
    assert_rejected(result, case.field, case.rule)
    kind = case.manifest["kind"].lower()
    left = crds.kubectl_run("get", "-n", namespace, kind, "bad", "--ignore-not-found", "-o", "name")
    assert left.stdout == ""


@pytest.mark.parametrize("kind", ["Model", "ClusterModel"])
def test_source_is_immutable(crds: ControlPlane, namespace: str, kind: str) -> None:
    name = f"immutable-{kind.lower()}"
    created = crds.kubectl_run(
        "create", "-n", namespace, "-f", "-", stdin=json.dumps(model({"url": HF}, kind, name))
    )
    assert created.returncode == 0, created.stderr
    change = {"spec": {"source": {"url": "https://huggingface.co/org/other"}}}
    result = crds.kubectl_run(
        "patch", "-n", namespace, kind.lower(), name, "--type=merge", "-p", json.dumps(change)
    )
    assert_rejected(
        result,
        "spec.source",
        f"spec.source is immutable: to use another source, delete the {kind} and create it again "
        f"with the new source, or create a new {kind} under another name",
    )
    got = crds.kubectl_run(
        "get", "-n", namespace, kind.lower(), name, "-o", "jsonpath={.spec.source.url}"
    )
    assert got.stdout == HF


@dataclass(frozen=True)
class StatusCase:
    id: str
    status: dict[str, Any]
    field: str
    rule: str


STATUS_CASES = [
    StatusCase("bogus-phase", {"phase": "Bogus"}, "status.phase", 'Unsupported value: "Bogus"'),
    StatusCase(
        "reason-breaks-pattern",
        {"conditions": [{"type": "Ready", "status": "False", "reason": "not valid!"}]},
        "status.conditions[0].reason",
        PATTERN,
    ),
    StatusCase(
        "condition-status-outside-enum",
        {"conditions": [{"type": "Ready", "status": "Maybe", "reason": "X"}]},
        "status.conditions[0].status",
        'Unsupported value: "Maybe"',
    ),
    StatusCase(
        "negative-size",
        {"artifact": {"sizeBytes": -1}},
        "status.artifact.sizeBytes",
        "should be greater than or equal to 1",
    ),
    StatusCase(
        "artifact-kind",
        {"artifact": {"kind": "S3"}},
        "status.artifact.kind",
        'Unsupported value: "S3"',
    ),
    StatusCase(
        "zero-parameters",
        {"resolved": {"parameterCount": 0}},
        "status.resolved.parameterCount",
        "should be greater than or equal to 1",
    ),
    StatusCase(
        "endpoint-type-outside-enum",
        {"resolved": {"supportedEndpointTypes": ["Chat", "Telepathy"]}},
        "status.resolved.supportedEndpointTypes[1]",
        'Unsupported value: "Telepathy"',
    ),
    StatusCase(
        "format-outside-enum",
        {"resolved": {"format": "ONNX"}},
        "status.resolved.format",
        'Unsupported value: "ONNX"',
    ),
    StatusCase(
        "feature-outside-enum",
        {"resolved": {"supportedFeatures": ["Telepathy"]}},
        "status.resolved.supportedFeatures[0]",
        'Unsupported value: "Telepathy"',
    ),
    StatusCase(
        "context-window-zero",
        {"resolved": {"contextWindowTokens": 0}},
        "status.resolved.contextWindowTokens",
        "should be greater than or equal to 1",
    ),
]


@pytest.fixture(scope="module")
def status_target(crds: ControlPlane, namespace: str) -> str:
    created = crds.kubectl_run(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(model({"url": HF}, name="status-target")),
    )
    assert created.returncode == 0, created.stderr
    return "status-target"


@pytest.mark.parametrize("case", STATUS_CASES, ids=lambda c: c.id)
def test_invalid_status_rejected(
    crds: ControlPlane, namespace: str, status_target: str, case: StatusCase
) -> None:
    result = crds.kubectl_run(
        "patch",
        "-n",
        namespace,
        "model",
        status_target,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": case.status}),
    )
    assert_rejected(result, case.field, case.rule)
    got = crds.kubectl_run(
        "get", "-n", namespace, "model", status_target, "-o", "jsonpath={.status}"
    )
    assert got.stdout == ""


def test_catalog_source_negative_entry_count_rejected(crds: ControlPlane) -> None:
    body = catalog_source()
    body["metadata"]["name"] = "entry-count"
    created = crds.kubectl_run("create", "-f", "-", stdin=json.dumps(body))
    assert created.returncode == 0, created.stderr
    result = crds.kubectl_run(
        "patch",
        "modelcatalogsource",
        "entry-count",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"entryCount": -1}}),
    )
    assert_rejected(result, "status.entryCount", "should be greater than or equal to 0")
