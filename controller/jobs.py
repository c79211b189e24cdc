"""The preparation Job, built from ``templates/preparation-job.yaml.j2`` (docs/design.md §4).

``build_job`` is pure: a ``JobRequest`` (what this attempt prepares) and the configuration (where
and how workers run) in, a Job manifest out. The environment and volumes are computed here,
because their shape depends on which credentials exist; everything else is in the template.
The worker reads this contract: ``worker/cli.py`` documents the same variables.

Every value from users or operators enters the template through ``json_literal``: JSON whose
non-ASCII and non-printable characters are all escapes, so the YAML reader sees only printable
ASCII and reads each value back exactly. (Raw, U+007F, U+0080 or U+FFFE stop the YAML reader,
and U+0085, a YAML line break, folds into a space.) A failure to render is
``JobRenderFailed``, never a bare template or YAML error.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from dataclasses import dataclass
from typing import Any

import jinja2
import yaml

from api import protocol
from api.catalog_import import GRANT_KEY
from controller.config import Config
from controller.errors import JobRenderFailed

# The repository's top-level templates/ is the package controller.templates (pyproject.toml maps
# it), so a checkout, an editable install and the wheel in the image read the same files.
TEMPLATES = importlib.resources.files("controller.templates")
JOB_TEMPLATE = "preparation-job.yaml.j2"
SECRETS_ROOT = "/var/run/ai-models"
WORKSPACE_PATH = "/workspace"
HF_HOME = "/tmp/hf-home"  # noqa: S108 - the pod's private emptyDir
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
    mount_from: tuple[str, ...] = ()
    max_expanded_bytes: int | None = None
    """An upload: the most bytes its archive may unpack to (the worker's unpacker bound)."""
    grant_secret: str | None = None
    """A catalog import: the per-Job Secret with the grant file (and the catalog's CA)."""
    """Repositories of the registry that may hold this source's blobs (``mountfrom.py``)."""


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
        {"name": protocol.ENV_POD_NAME, "valueFrom": field("metadata.name")},
        {"name": protocol.ENV_POD_NAMESPACE, "valueFrom": field("metadata.namespace")},
        {"name": protocol.ENV_HF_ENDPOINT, "value": config.sources.hugging_face.endpoint},
        {"name": protocol.ENV_HF_HUB_DISABLE_TELEMETRY, "value": "1"},
        {"name": protocol.ENV_HF_HOME, "value": HF_HOME},
        {"name": protocol.ENV_OLLAMA_REGISTRY, "value": config.sources.ollama.registry},
        {"name": protocol.ENV_AI_MODELS_WORKSPACE, "value": WORKSPACE_PATH},
        {
            "name": protocol.ENV_AI_MODELS_PROGRESS_INTERVAL,
            "value": str(config.worker.progress_interval_seconds),
        },
        {
            "name": protocol.ENV_AI_MODELS_TRANSFER_CONCURRENCY,
            "value": str(config.worker.transfer_concurrency),
        },
        {"name": protocol.ENV_AI_MODELS_LOG_FORMAT, "value": config.worker.log_format},
    ]
    if request.mount_from:
        mount_from = ",".join(request.mount_from)
        env.append({"name": protocol.ENV_AI_MODELS_MOUNT_FROM, "value": mount_from})
    if request.max_expanded_bytes is not None:
        limit = str(request.max_expanded_bytes)
        env.append({"name": protocol.ENV_AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES, "value": limit})
    if request.token_secret:
        token = f"{SECRETS_ROOT}/source-token/token"
        env.append({"name": protocol.ENV_HF_TOKEN_PATH, "value": token})
    if request.grant_secret:
        grant = f"{SECRETS_ROOT}/catalog-grant/{GRANT_KEY}"
        env.append({"name": protocol.ENV_AI_MODELS_CATALOG_GRANT_FILE, "value": grant})
    if config.registry.auth_secret_name:
        docker_config = f"{SECRETS_ROOT}/registry-auth"
        env.append({"name": protocol.ENV_DOCKER_CONFIG, "value": docker_config})
    if config.registry.ca_secret_name:
        registry_ca = f"{SECRETS_ROOT}/registry-ca/ca.crt"
        env.append({"name": protocol.ENV_AI_MODELS_REGISTRY_CA, "value": registry_ca})
    if config.registry.insecure:
        env.append({"name": protocol.ENV_AI_MODELS_REGISTRY_INSECURE, "value": "true"})
    if config.sources.ca_secret_name:
        sources_ca = f"{SECRETS_ROOT}/source-ca/ca.crt"
        env.append({"name": protocol.ENV_SOURCES_CA_BUNDLE, "value": sources_ca})
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
    if request.grant_secret:  # the whole Secret: the grant file and, when there is one, the CA
        grant = {"secretName": request.grant_secret, "defaultMode": SECRET_FILE_MODE}
        volumes.append({"name": "catalog-grant", "secret": grant})
        mounts.append(_mount("catalog-grant", f"{SECRETS_ROOT}/catalog-grant"))
    return volumes, mounts


PROTOCOL: dict[str, object] = {
    "label_app": protocol.LABEL_APP,
    "worker_app": protocol.WORKER_APP,
    "label_owner_kind": protocol.LABEL_OWNER_KIND,
    "label_owner_uid": protocol.LABEL_OWNER_UID,
    "annotation_owner_namespace": protocol.ANNOTATION_OWNER_NAMESPACE,
    "annotation_owner_name": protocol.ANNOTATION_OWNER_NAME,
    "annotation_retry_of": protocol.ANNOTATION_RETRY_OF,
    "permanent_exit_code": protocol.PERMANENT_EXIT_CODE,
    "worker_container": protocol.WORKER_CONTAINER,
    "termination_log_path": protocol.TERMINATION_LOG_PATH,
}
"""The names and codes the template takes from ``api/protocol.py`` (its ``protocol`` variable)."""


_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    # YAML's 8-digit escape above the BMP: YAML readers do not join JSON's surrogate pairs.
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def json_literal(value: Any) -> str:
    """``value`` as a JSON flow value that a YAML reader parses back to exactly ``value``: JSON
    escapes control characters; every other character outside printable ASCII (they occur
    only inside strings) becomes a double-quoted-scalar escape."""
    return _NOT_PRINTABLE_ASCII.sub(_escape, json.dumps(value, sort_keys=True, ensure_ascii=False))


def _template_source(name: str) -> str | None:
    template = TEMPLATES.joinpath(name)
    return template.read_text(encoding="utf-8") if template.is_file() else None


_environment = jinja2.Environment(
    loader=jinja2.FunctionLoader(_template_source),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # noqa: S701 - renders YAML, not HTML; values go through json_literal
    keep_trailing_newline=True,
)
_environment.filters["json_literal"] = json_literal


def build_job(request: JobRequest, config: Config) -> dict[str, Any]:
    """The Job manifest of one preparation attempt; ``JobRenderFailed`` when it cannot be built."""
    volumes, mounts = _volumes(request, config)
    job = {
        **request.__dict__,
        "args": ["prepare", request.source_url, "--to", request.destination],
        "env": _env(request, config),
        "volumes": volumes,
        "volume_mounts": mounts,
    }
    worker = config.worker.model_dump()
    try:
        text = _environment.get_template(JOB_TEMPLATE).render(
            job=job, worker=worker, protocol=PROTOCOL
        )
        manifest = yaml.safe_load(text)
    except (jinja2.TemplateError, yaml.YAMLError, OSError) as error:
        raise JobRenderFailed(f"{JOB_TEMPLATE}: {type(error).__name__}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("kind") != "Job":
        raise JobRenderFailed(f"{JOB_TEMPLATE} did not render a Job manifest")
    return manifest
