"""The CRDs install into the real API server and accept every sample and a complete status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ground.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "samples").glob("*.yaml"))
NAMESPACE = "samples"


@pytest.fixture(scope="module")
def namespace(crds: ControlPlane) -> str:
    crds.kubectl_run("create", "namespace", NAMESPACE)
    return NAMESPACE


def test_samples_cover_every_source_kind() -> None:
    assert [p.name for p in SAMPLES] == [
        "clustermodel-catalog.yaml",
        "clustermodel-huggingface.yaml",
        "deployment-consuming-model.yaml",
        "job-consuming-clustermodel.yaml",
        "model-catalog.yaml",
        "model-huggingface-private.yaml",
        "model-huggingface.yaml",
        "model-ollama.yaml",
        "model-upload.yaml",
        "modelcatalogsource.yaml",
    ]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_passes_server_side_dry_run(
    without_chart_webhook: ControlPlane, namespace: str, sample: Path
) -> None:
    crds = without_chart_webhook
    result = crds.kubectl_run("apply", "--dry-run=server", "-n", namespace, "-f", str(sample))
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


def test_short_names_and_category_resolve(crds: ControlPlane) -> None:
    for short in ("mdl", "cmdl", "mcs", "ai-models"):
        result = crds.kubectl_run("get", short, "-A")
        assert result.returncode == 0, result.stderr


COMPLETE_STATUS = {
    "phase": "Ready",
    "observedGeneration": 1,
    "artifact": {
        "kind": "OCI",
        "digest": "sha256:" + "a" * 64,
        "mediaType": "application/vnd.cncf.model.manifest.v1+json",
        "sizeBytes": 90_888_945,
    },
    "resolved": {
        "architecture": "BertModel",
        "family": "bert",
        "format": "Safetensors",
        "parameterCount": 22_713_216,
        "contextWindowTokens": 512,
        "supportedEndpointTypes": ["Embeddings"],
        "supportedFeatures": [],
        "sourceCapabilities": {"provider": "HuggingFace", "tasks": ["sentence-similarity"]},
    },
    "source": {
        "resolvedType": "HuggingFace",
        "resolvedRevision": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
    },
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Published",
            "message": "artifact published",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-11-26T20:00:00Z",
        }
    ],
}


def test_complete_status_is_accepted_and_shown_in_columns(
    crds: ControlPlane, namespace: str
) -> None:
    created = crds.kubectl_run(
        "apply", "-n", namespace, "-f", str(REPO / "samples" / "model-huggingface.yaml")
    )
    assert created.returncode == 0, created.stderr
    patched = crds.kubectl_run(
        "patch",
        "-n",
        namespace,
        "model",
        "all-minilm-l6-v2",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": COMPLETE_STATUS}),
    )
    assert patched.returncode == 0, patched.stderr
    got = crds.kubectl_run("get", "-n", namespace, "model", "all-minilm-l6-v2", "-o", "json")
    assert json.loads(got.stdout)["status"] == COMPLETE_STATUS
    table = crds.kubectl_run("get", "-n", namespace, "mdl", "all-minilm-l6-v2").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "PHASE",
        "PROGRESS",
        "FORMAT",
        "PARAMETERS",
        "SIZE",
        "REASON",
        "AGE",
    ]
    # Progress is cleared at Ready, so its cell is blank.
    assert table[1].split()[:6] == [
        "all-minilm-l6-v2",
        "Ready",
        "Safetensors",
        "22713216",
        "90888945",
        "Published",
    ]
