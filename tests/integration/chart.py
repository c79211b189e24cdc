"""Helpers of the chart tests: the pinned helm binary, rendering, installing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "ai-models"


def helm_binary() -> Path:
    out = subprocess.run(
        [str(REPO / "hack" / "install-helm.sh")], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=False)


def template(namespace: str, values: tuple[Path, ...], sets: tuple[str, ...], *extra: str) -> str:
    """``helm template`` of the chart; the rendered YAML."""
    args = ["template", "ai-models", str(CHART), "-n", namespace, *extra]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(
    namespace: str = "d8-ai-models", *values: Path, sets: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(template(namespace, values, sets)) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def install(
    plane: Any, namespace: str, sets: tuple[str, ...] = (), values: tuple[Path, ...] = ()
) -> list[dict[str, Any]]:
    """Applies the rendered chart (CRDs included) into ``namespace`` as the cluster admin would."""
    plane.kubectl_run("create", "namespace", namespace)
    rendered = template(namespace, values, sets, "--include-crds")
    # Namespaces the chart renders into but does not own (catalog.secretsNamespace: d8-system,
    # which a Deckhouse cluster always has).
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    for other in sorted({d["metadata"].get("namespace") for d in docs} - {None, namespace}):
        plane.kubectl_run("create", "namespace", other)
    # No `-n`: every namespaced object of the chart names its namespace, and some are not in
    # the release namespace (the Roles of controller.authSecretNamespaces).
    applied = plane.kubectl_run(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=rendered
    )
    assert applied.returncode == 0, applied.stderr
    waited = plane.kubectl_run(
        "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"
    )
    assert waited.returncode == 0, waited.stderr
    return [d for d in yaml.safe_load_all(rendered) if d]
