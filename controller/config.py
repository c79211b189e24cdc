"""The controller's configuration: one YAML/JSON file rendered by the chart from values.yaml.

Validated with pydantic at start; an invalid file stops the controller with a message that names
the bad key (``worker.maxConcurrent: Input should be greater than or equal to 1``). Every value
has a safe default, so an empty file is a working development configuration.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from api.meta import DnsSubdomainName


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


Resources = dict[Literal["requests", "limits"], dict[str, str]]
DEFAULT_WORKER_RESOURCES: Resources = {
    "requests": {"cpu": "500m", "memory": "512Mi"},
    "limits": {"memory": "2Gi"},
}


class RegistryConfig(_Section):
    host: str = "ai-models-registry.d8-ai-models.svc:5000"
    """``host[:port]`` of the OCI registry the artifacts are pushed to."""
    prefix: str = "ai-models"
    """Repository prefix: ``<host>/<prefix>/model/<namespace>/<name>``."""
    auth_secret_name: DnsSubdomainName | None = None
    """A ``kubernetes.io/dockerconfigjson`` Secret in the system namespace (push credentials)."""
    ca_secret_name: DnsSubdomainName | None = None
    """A Secret in the system namespace whose ``ca.crt`` signs the registry's certificate."""
    insecure: bool = False
    """Plain HTTP to the registry: development only."""

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_path(cls, value: str) -> str:
        if value.startswith("/") or value.endswith("/") or "//" in value:
            raise ValueError("must be a relative path without leading, trailing or double '/'")
        return value


class EmptyDirWorkspace(_Section):
    size_limit: str = "50Gi"


class EphemeralWorkspace(_Section):
    storage_class_name: str | None = None
    size: str = "100Gi"


class WorkspaceConfig(_Section):
    empty_dir: EmptyDirWorkspace | None = None
    ephemeral: EphemeralWorkspace | None = None

    def model_post_init(self, context: Any) -> None:
        if self.empty_dir is not None and self.ephemeral is not None:
            raise ValueError("set either emptyDir or ephemeral, not both")


class WorkerConfig(_Section):
    image: str = "ai-models-worker:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account_name: DnsSubdomainName = "ai-models-worker"
    resources: Resources = Field(default_factory=lambda: dict(DEFAULT_WORKER_RESOURCES))
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] = Field(default_factory=dict)
    priority_class_name: str | None = None
    workspace: WorkspaceConfig = Field(
        default_factory=lambda: WorkspaceConfig(empty_dir=EmptyDirWorkspace())
    )
    backoff_limit: Annotated[int, Field(ge=0, le=20)] = 3
    active_deadline_seconds: Annotated[int, Field(ge=60)] = 86_400
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] = 3_600
    max_concurrent: Annotated[int, Field(ge=1, le=1000)] = 2
    """Preparations running at once; the rest wait in Pending with their queue position."""
    progress_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    transfer_concurrency: Annotated[int, Field(ge=1, le=32)] = 3
    """Files in flight per preparation."""
    log_format: Literal["text", "json"] = "text"
    """The worker's log lines (``AI_MODELS_LOG_FORMAT``): for people, or JSON."""


class HuggingFaceConfig(_Section):
    endpoint: str = "https://huggingface.co"


class OllamaConfig(_Section):
    registry: str = "https://registry.ollama.ai"


class SourcesConfig(_Section):
    hugging_face: HuggingFaceConfig = Field(default_factory=HuggingFaceConfig)
    ollama: OllamaConfig = Field(default_factory=OllamaConfig)
    ca_secret_name: DnsSubdomainName | None = None
    """A Secret in the system namespace whose ``ca.crt`` the worker trusts for sources."""


def _base_url(value: str) -> str:
    """Empty, or ``http(s)://host[:port][/path]`` without query or fragment."""
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must have no query, fragment or credentials")
    return value.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(_base_url)]


class UploadConfig(_Section):
    """Upload sessions (docs/upload.md)."""

    session_ttl_seconds: Annotated[int, Field(ge=60, le=30 * 86_400, alias="sessionTTLSeconds")] = (
        86_400
    )
    size_limit_bytes: Annotated[int, Field(ge=1)] = 200 << 30
    external_url: Annotated[BaseUrl, Field(alias="externalURL")] = ""
    """The gateway as users outside the cluster reach it (an Ingress); the user Secret's
    ``url`` when set."""
    in_cluster_url: Annotated[BaseUrl, Field(alias="inClusterURL")] = ""
    """The gateway's Service, rendered by the chart; empty: uploads wait with
    ``UploadGatewayNotConfigured``."""


MIN_REFRESH_SECONDS = 30.0
MAX_REFRESH_SECONDS = 7 * 86_400.0
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go-style duration (``30s``, ``10m``, ``1h30m``, ``1.5h``) between 30 s and
    7 days; ``ValueError`` naming the rule otherwise."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m or 1h")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not MIN_REFRESH_SECONDS <= seconds <= MAX_REFRESH_SECONDS:
        raise ValueError(f"{text!r} is outside 30s..168h")
    return seconds


def _refresh_interval(value: str) -> str:
    parse_duration(value)
    return value


class CatalogConfig(_Section):
    """ModelCatalogSources (docs/catalog.md)."""

    secrets_namespace: DnsSubdomainName = "d8-system"
    """Where credentialsSecretName and caSecretName are read (``get`` only)."""
    default_refresh_interval: Annotated[str, AfterValidator(_refresh_interval)] = "10m"
    """A source's refreshInterval when it sets none."""


DEFAULT_MATERIALIZE_RESOURCES: Resources = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
DEFAULT_MATERIALIZE_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


class MaterializeConfig(_Section):
    """The init container the webhook injects into consuming pods (docs/consumption.md)."""

    image: str = "ai-models-worker:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: Resources = Field(default_factory=lambda: dict(DEFAULT_MATERIALIZE_RESOURCES))
    security_context: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_MATERIALIZE_SECURITY_CONTEXT)
    )
    delivery_endpoint: str = "http://$(HOST_IP):9444"
    """The node-local delivery endpoint (docs/delivery.md); ``$(HOST_IP)`` is the node's address
    (plain HTTP: the hop is from a pod to its own node; the token is bound to the pod)."""
    token_audience: Annotated[str, Field(min_length=1)] = "ai-models-delivery"  # noqa: S105
    token_expiration_seconds: Annotated[int, Field(ge=600, le=86_400)] = 600


class WebhookConfig(_Section):
    enabled: bool = False
    port: Annotated[int, Field(ge=0, le=65535)] = 9443
    """0: any free port (tests, where the API server is told the URL)."""
    bind_address: str = "0.0.0.0"  # noqa: S104 - the API server reaches it through the Service
    service_name: DnsSubdomainName = "ai-models-webhook"
    tls_secret_name: DnsSubdomainName = "ai-models-webhook-tls"  # noqa: S105
    configuration_name: DnsSubdomainName = "ai-models-webhook"
    """The MutatingWebhookConfiguration whose caBundle the controller keeps current."""
    ip_addresses: list[str] = Field(default_factory=list)
    """Extra IP SANs of the serving certificate (127.0.0.1 in tests)."""
    gate_workers: Annotated[int, Field(ge=1, le=16)] = 2
    materialize: MaterializeConfig = Field(default_factory=MaterializeConfig)


class LeaderElectionConfig(_Section):
    enabled: bool = True
    lease_name: DnsSubdomainName = "ai-models-controller"
    lease_duration_seconds: Annotated[float, Field(gt=1)] = 15.0
    renew_deadline_seconds: Annotated[float, Field(gt=0)] = 10.0
    retry_period_seconds: Annotated[float, Field(gt=0)] = 2.0


class ControllerConfig(_Section):
    workers: Annotated[int, Field(ge=1, le=64)] = 4
    """Reconciles running at once (never two for the same object)."""
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    health_port: Annotated[int, Field(ge=0, le=65535)] = 8081
    bind_address: str = "0.0.0.0"  # noqa: S104 - serves probes and metrics inside the pod
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    leader_election: LeaderElectionConfig = Field(default_factory=LeaderElectionConfig)
    retry_base_seconds: Annotated[float, Field(gt=0)] = 1.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 300.0


class Config(_Section):
    system_namespace: DnsSubdomainName = "d8-ai-models"
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    upload: UploadConfig = Field(default_factory=UploadConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{key}: {item['msg']}")
    return "; ".join(parts)


def parse_config(data: object) -> Config:
    try:
        return Config.model_validate(data or {})
    except ValidationError as error:
        raise ConfigError(f"invalid configuration: {_describe(error)}") from None


def load_config(path: Path | None) -> Config:
    """Reads and validates the configuration file; no path means all defaults."""
    if path is None:
        return Config()
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read configuration {path}: {error.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"configuration {path} is not valid YAML/JSON: {error}") from None
    return parse_config(data)
