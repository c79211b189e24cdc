"""Fixtures for tests against the real API server: the CRDs installed and Established."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ground.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CRD_NAMES = (
    "models.ai.deckhouse.io",
    "clustermodels.ai.deckhouse.io",
    "modelcatalogsources.ai.deckhouse.io",
)


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    applied = control_plane.kubectl_run("apply", "--server-side", "-f", str(REPO / "crds"))
    assert applied.returncode == 0, applied.stderr
    crd_refs = [f"crd/{name}" for name in CRD_NAMES]
    waited = control_plane.kubectl_run(
        "wait", "--for=condition=Established", "--timeout=60s", *crd_refs
    )
    assert waited.returncode == 0, waited.stderr
    return control_plane


@pytest.fixture
def without_chart_webhook(crds: ControlPlane) -> ControlPlane:
    """Removes the consumption webhook a chart install elsewhere in the session registered: it
    points at a Service, which this ground cannot route to (no kube-proxy), so the API server
    would refuse every object that names a model."""
    crds.kubectl_run(
        "delete", "mutatingwebhookconfiguration", "ai-models-webhook", "--ignore-not-found"
    )
    return crds
