"""The preparation Job, built from ``templates/preparation-job.yaml.j2`` (DESIGN.md §4).

``build_job`` is pure: a ``JobRequest`` (what this attempt prepares) and the configuration (where
and how workers run) in, a Job manifest out. The environment and volumes are computed here,
because their shape depends on which credentials exist; everything else is in the template.
The worker reads this contract: ``worker/cli.py`` documents the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from controller.config import Config

# In the image the templates are copied next to the venv (Dockerfile.controller); from a
# checkout they are the repository's templates/ directory.
TEMPLATES = Path(
    os.environ.get("AI_MODELS_TEMPLATES", Path(__file__).resolve().parent.parent / "templates")
)
JOB_TEMPLATE = "preparation-job.yaml.j2"
SECRETS_ROOT = "/var/run/ai-models"
WORKSPACE_PATH = "/workspace"
SECRET_FILE_MODE = 0o440  # group-readable: the pod's fsGroup owns mounted Secret files


@dataclass(frozen=True)
class JobRequest:
    name: str
    namespace: str
    owner_kind: str
    owner_uid: str
    owner_namespace: str
    owner_name: str
    retry: str
    source_url: str
    destination: str
    token_secret: str | None = None
    owner_reference: dict[str, Any] | None = None


def _secret_volume(name: str, secret: str, key: str, path: str) -> dict[str, Any]:
    return {
        "name": name,
        "secret": {
            "secretName": secret,
            "items": [{"key": key, "path": path}],
            "defaultMode": SECRET_FILE_MODE,
        },
    }


def _mount(name: str, path: str, read_only: bool = True) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": read_only}


def _workspace_volume(config: Config) -> dict[str, Any]:
    workspace = config.worker.workspace
    if workspace.ephemeral is not None:
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": workspace.ephemeral.size}},
        }
        if workspace.ephemeral.storage_class_name:
            claim["storageClassName"] = workspace.ephemeral.storage_class_name
        return {"name": "workspace", "ephemeral": {"volumeClaimTemplate": {"spec": claim}}}
    size = workspace.empty_dir.size_limit if workspace.empty_dir else "50Gi"
    return {"name": "workspace", "emptyDir": {"sizeLimit": size}}


def _env(request: JobRequest, config: Config) -> list[dict[str, Any]]:
    def field(path: str) -> dict[str, Any]:
        return {"fieldRef": {"fieldPath": path}}

    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
        {"name": "HF_ENDPOINT", "value": config.sources.hugging_face.endpoint},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        {"name": "HF_HOME", "value": "/tmp/hf-home"},  # noqa: S108 - the pod's private emptyDir
        {"name": "OLLAMA_REGISTRY", "value": config.sources.ollama.registry},
        {"name": "AI_MODELS_WORKSPACE", "value": WORKSPACE_PATH},
        {
            "name": "AI_MODELS_PROGRESS_INTERVAL",
            "value": str(config.worker.progress_interval_seconds),
        },
        {
            "name": "AI_MODELS_TRANSFER_CONCURRENCY",
            "value": str(config.worker.transfer_concurrency),
        },
    ]
    if request.token_secret:
        env.append({"name": "HF_TOKEN_PATH", "value": f"{SECRETS_ROOT}/source-token/token"})
    if config.registry.auth_secret_name:
        env.append({"name": "DOCKER_CONFIG", "value": f"{SECRETS_ROOT}/registry-auth"})
    if config.registry.ca_secret_name:
        env.append({"name": "AI_MODELS_REGISTRY_CA", "value": f"{SECRETS_ROOT}/registry-ca/ca.crt"})
    if config.registry.insecure:
        env.append({"name": "AI_MODELS_REGISTRY_INSECURE", "value": "true"})
    if config.sources.ca_secret_name:
        env.append({"name": "SOURCES_CA_BUNDLE", "value": f"{SECRETS_ROOT}/source-ca/ca.crt"})
    return env


def _volumes(request: JobRequest, config: Config) -> tuple[list[Any], list[Any]]:
    volumes: list[dict[str, Any]] = [
        _workspace_volume(config),
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    mounts = [_mount("workspace", WORKSPACE_PATH, False), _mount("tmp", "/tmp", False)]  # noqa: S108
    optional = (
        ("source-token", request.token_secret, "token", "token"),
        ("registry-auth", config.registry.auth_secret_name, ".dockerconfigjson", "config.json"),
        ("registry-ca", config.registry.ca_secret_name, "ca.crt", "ca.crt"),
        ("source-ca", config.sources.ca_secret_name, "ca.crt", "ca.crt"),
    )
    for name, secret, key, path in optional:
        if secret:
            volumes.append(_secret_volume(name, secret, key, path))
            mounts.append(_mount(name, f"{SECRETS_ROOT}/{name}"))
    return volumes, mounts


_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # noqa: S701 - renders YAML, not HTML; values go through tojson
    keep_trailing_newline=True,
)
_environment.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}


def build_job(request: JobRequest, config: Config) -> dict[str, Any]:
    """The Job manifest of one preparation attempt."""
    volumes, mounts = _volumes(request, config)
    job = {
        **request.__dict__,
        "args": ["prepare", request.source_url, "--to", request.destination],
        "env": _env(request, config),
        "volumes": volumes,
        "volume_mounts": mounts,
    }
    worker = config.worker.model_dump()
    text = _environment.get_template(JOB_TEMPLATE).render(job=job, worker=worker)
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest
