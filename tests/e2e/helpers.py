"""Small helpers of the end-to-end tests: apply objects, wait for phases, read the registry."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.e2e.conftest import JSON, SYSTEM, get_json, wait_for
from tests.ground.controlplane import ControlPlane

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def apply(plane: ControlPlane, obj: JSON) -> None:
    result = plane.kubectl_run("apply", "-f", "-", stdin=json.dumps(obj))
    assert result.returncode == 0, result.stderr


def namespace(plane: ControlPlane, name: str) -> str:
    plane.kubectl_run("create", "namespace", name)
    return name


def model(name: str, url: str, ns: str | None, auth: str | None = None) -> JSON:
    source: JSON = {"url": url}
    if auth:
        source["authSecretRef"] = {"name": auth}
    meta: JSON = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "Model" if ns else "ClusterModel",
        "metadata": meta,
        "spec": {"source": source},
    }


def get_model(plane: ControlPlane, name: str, ns: str | None) -> JSON:
    if ns:
        return get_json(plane, "model", name, "-n", ns)
    return get_json(plane, "clustermodel", name)


def ready_condition(obj: JSON) -> JSON:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return dict(cond)
    return {}


def wait_phase(
    plane: ControlPlane, name: str, ns: str | None, *phases: str, timeout: float = 180
) -> JSON:
    def reached() -> JSON | None:
        obj = get_model(plane, name, ns)
        return obj if (obj.get("status") or {}).get("phase") in phases else None

    found: JSON = wait_for(reached, timeout)
    return found


def owned(plane: ControlPlane, kind: str, uid: str) -> list[JSON]:
    items: list[JSON] = get_json(
        plane, kind, "-n", SYSTEM, "-l", f"ai.deckhouse.io/owner-uid={uid}"
    ).get("items", [])
    return items


def registry_get(
    url: str, accept: str = MANIFEST, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), b""
    except urllib.error.URLError:
        return 0, {}, b""


def manifest(registry_url: str, repository: str, reference: str) -> tuple[int, Any, str]:
    status, headers, body = registry_get(f"{registry_url}/v2/{repository}/manifests/{reference}")
    return (
        status,
        json.loads(body) if status == 200 else None,
        headers.get("Docker-Content-Digest", ""),
    )
