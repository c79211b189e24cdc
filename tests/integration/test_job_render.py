"""The preparation Job on the real API server: a source URL with characters the CRD's pattern
accepts (RE2's `.` excludes only "\\n") but YAML does not take raw is stored by the API server,
rendered into a Job by ``build_job`` and created, and the created Job carries it exactly."""

from __future__ import annotations

import json

import pytest

from controller.config import Config
from controller.jobs import JobRequest, build_job
from tests.ground.controlplane import ControlPlane

NAMESPACE = "job-render"
AWKWARD = ["\u0080", "\u0085", "\ufffe", "\u2028", "\t", "\r", "\x7f", "\x00", "\U0001f600"]


@pytest.fixture(scope="module")
def cluster(crds: ControlPlane) -> ControlPlane:
    crds.kubectl_run("create", "namespace", NAMESPACE)
    return crds


def create(plane: ControlPlane, obj: dict[str, object]) -> dict[str, object]:
    created = plane.kubectl_run("create", "-o", "json", "-f", "-", stdin=json.dumps(obj))
    assert created.returncode == 0, created.stderr
    result: dict[str, object] = json.loads(created.stdout)
    return result


@pytest.mark.parametrize("char", AWKWARD, ids=lambda c: f"U+{ord(c):04X}")
def test_an_awkward_url_reaches_the_created_job_exactly(cluster: ControlPlane, char: str) -> None:
    url = f"https://huggingface.co/org/repo{char}x"
    name = f"awkward-{ord(char):x}"
    model = create(
        cluster,
        {
            "apiVersion": "ai.deckhouse.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"source": {"url": url}},
        },
    )
    stored = model["spec"]["source"]["url"]  # type: ignore[index]
    assert stored == url
    request = JobRequest(
        f"prepare-{name}", NAMESPACE, "Model", str(model["metadata"]["uid"]),  # type: ignore[index]
        NAMESPACE, name, "", stored, f"registry.internal/m/{name}:latest",
    )  # fmt: skip
    job = create(cluster, build_job(request, Config()))
    container = job["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert container["args"] == ["prepare", url, "--to", f"registry.internal/m/{name}:latest"]
    cluster.kubectl_run("delete", "job", f"prepare-{name}", "-n", NAMESPACE, "--wait=false")
