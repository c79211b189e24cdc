"""Consuming workloads of the real-node consumption tests: a container of the worker image that
prints the sha256 of every file under ``/models/<name>`` (one JSON line) and then waits; the
delivery pod of a node and its metrics; the digests of the published source files."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import JSON, SYSTEM, get_json
from tests.ground.controlplane import ControlPlane
from tests.ground.images import WORKER_IMAGE

MINILM_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
FILEPATH = "org.cncf.model.filepath"
JOURNAL = ".ai-models-materialized.json"
DELIVERY = "app.kubernetes.io/name=ai-models-delivery"
BLOB_METRICS = ("registry_bytes_total", "served_bytes_total", "cache_misses_total")
HASHES = """
import hashlib, json, os, sys, time
root = os.environ.get("AI_MODELS_DIR", "/models")
report = {}
for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    files = report.setdefault(name, {})
    for directory, _, names in os.walk(os.path.join(root, name)):
        for file in names:
            path = os.path.join(directory, file)
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            files[os.path.relpath(path, os.path.join(root, name))] = digest.hexdigest()
print(json.dumps(report), flush=True)
if sys.argv[1:] == ["wait"]:
    time.sleep(3600)
"""


def _container(wait: bool) -> JSON:
    return {
        "name": "app",
        "image": WORKER_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["python", "-c", HASHES, *(["wait"] if wait else [])],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
    }


def _annotations(model: str | None, cluster_model: str | None) -> dict[str, str]:
    annotations = {}
    if model:
        annotations["ai.deckhouse.io/model"] = model
    if cluster_model:
        annotations["ai.deckhouse.io/clustermodel"] = cluster_model
    return annotations


def deployment(
    name: str,
    ns: str,
    node: str,
    replicas: int = 1,
    model: str | None = None,
    cluster_model: str | None = None,
) -> JSON:
    """A Deployment whose pods report their model files and keep running."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": _annotations(model, cluster_model),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [_container(wait=True)],
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "terminationGracePeriodSeconds": 0,
                },
            },
        },
    }


def consumer_pod(
    name: str, ns: str, node: str, model: str | None = None, cluster_model: str | None = None
) -> JSON:
    """A bare pod that reports its model files and exits."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app": name},
            "annotations": _annotations(model, cluster_model),
        },
        "spec": {
            "containers": [_container(wait=False)],
            "nodeSelector": {"kubernetes.io/hostname": node},
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
        },
    }


def pods_of(plane: ControlPlane, ns: str, app: str) -> list[JSON]:
    items: list[JSON] = get_json(plane, "pods", "-n", ns, "-l", f"app={app}").get("items", [])
    return items


def running(pods: list[JSON], count: int) -> list[JSON]:
    """The pods when exactly ``count`` of them run with every container ready, else []."""
    up = [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])
    ]
    return up if len(up) == count == len(pods) else []


def phase(plane: ControlPlane, ns: str, name: str) -> str:
    value: str = (get_json(plane, "pod", name, "-n", ns).get("status") or {}).get("phase", "")
    return value


def file_digests(plane: ControlPlane, pod: JSON) -> Any:
    """The report the pod's container printed (``kubectl logs``, through the kubelet), without
    ``materialize``'s own journal in each model directory (asserted present)."""
    meta = pod["metadata"]
    logs = plane.kubectl_run("logs", meta["name"], "-n", meta["namespace"], "-c", "app")
    assert logs.returncode == 0, logs.stderr
    report = json.loads(logs.stdout.strip().splitlines()[-1])
    for name, files in report.items():
        assert files.pop(JOURNAL, None), f"{JOURNAL} missing under /models/{name}"
    return report


def source_digests(source: Path, manifest: JSON) -> dict[str, str]:
    """sha256 of the source file behind every file layer of the published manifest."""
    paths = [layer["annotations"][FILEPATH] for layer in manifest["layers"]]
    return {path: hashlib.sha256((source / path).read_bytes()).hexdigest() for path in paths}


def delivery_ip(plane: ControlPlane, node: str) -> str:
    """The address of the delivery pod on ``node`` once it is Ready, else ""."""
    selector = f"spec.nodeName={node}"
    listed = get_json(plane, "pods", "-n", SYSTEM, "-l", DELIVERY, "--field-selector", selector)
    for pod in listed.get("items", []):
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return str(pod["status"]["podIP"])
    return ""


def blob_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """How far the delivery pod's blob counters moved between two readings of ``metrics``."""
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in BLOB_METRICS}


def metrics(address: str) -> dict[str, float]:
    """The delivery pod's counters (``ai_models_delivery_`` prefix dropped), read from the host
    at the pod's address."""
    url = f"http://{address}:9444/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ai_models_delivery_") and "{" not in line:
            name, value = line.split()
            values[name.removeprefix("ai_models_delivery_")] = float(value)
    return values


def forged_pod(name: str, ns: str, node: str, digest: str, pod_namespace: str) -> JSON:
    """A pod naming Model ``minilm`` that brings its own ``ai-models-materialize`` init container
    (so the webhook leaves it as it is) with a digests annotation and ``POD_NAMESPACE`` of its
    choosing: the delivery endpoint is the one that must refuse."""
    digests = [{"kind": "Model", "name": "minilm", "digest": digest}]
    init = {
        "name": "ai-models-materialize",
        "image": WORKER_IMAGE,
        "imagePullPolicy": "Never",
        "command": [
            "ai-models-worker",
            "materialize-pod",
            "--digests",
            "/var/run/ai-models/digests/model-digests.json",
            "--token",
            "/var/run/ai-models/token/token",
            "--endpoint",
            "http://$(HOST_IP):9444",
            "--to",
            "/models",
        ],
        "env": [
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "POD_NAMESPACE", "value": pod_namespace},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "models", "mountPath": "/models"},
            {"name": "digests", "mountPath": "/var/run/ai-models/digests"},
            {"name": "token", "mountPath": "/var/run/ai-models/token"},
        ],
    }
    field = "metadata.annotations['ai.deckhouse.io/model-digests']"
    token = {"audience": "ai-models-delivery", "expirationSeconds": 600, "path": "token"}
    pod = consumer_pod(name, ns, node, model="minilm")
    pod["metadata"]["annotations"]["ai.deckhouse.io/model-digests"] = json.dumps(digests)
    pod["spec"]["initContainers"] = [init]
    pod["spec"]["volumes"] = [
        {"name": "models", "emptyDir": {}},
        {"name": "digests", "downwardAPI": {"items": [{"path": "model-digests.json",
                                                       "fieldRef": {"fieldPath": field}}]}},
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": token}]}},
    ]  # fmt: skip
    return pod
