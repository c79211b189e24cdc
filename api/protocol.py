"""The protocol between the controller, the worker, the delivery endpoint and the Job template,
written once; every side imports it from here.

- **Keys**: the finalizer, the annotations and labels on objects, Jobs, pods and artifact
  manifests, and the scheduling gate, each spelled once under the API group.
- **Reports** the worker writes on its own pod: the result annotation (``WorkerResult``, in the
  exact shapes of the status fields) and the progress annotations (``ProgressDetail`` and a
  percent). The worker serialises through these models; the controller parses them back with
  ``parse_result``, ``parse_progress_detail`` and ``parse_percent``, which treat the text as
  untrusted: bounded before it is decoded, validated field by field.
- **Environment** the preparation Job gives the worker (``ENV_*``; ``JOB_ENV`` is all of them).
- **Exit codes**: ``0`` success; ``2`` permanent — the Job's ``podFailurePolicy`` fails the Job
  at once; anything else is transient and the Job retries the pod. The worker uses ``1``.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Final

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from api.meta import GROUP, ApiModel, parse_bounded
from api.model import ArtifactStatus, ResolvedMetadata, SourceStatus

# ---- keys ------------------------------------------------------------------------------------

FINALIZER: Final = f"{GROUP}/cleanup"
"""On every Model and ClusterModel: the controller removes the Job, Secrets and artifact first."""
RETRY_ANNOTATION: Final = f"{GROUP}/retry"
"""Set by the user: a new value retries a Failed object."""
ANNOTATION_RETRY_OF: Final = f"{GROUP}/retry-value"
"""On the object and its Job: the retry value of the attempt the Job runs."""
LABEL_APP: Final = "app.kubernetes.io/name"
WORKER_APP: Final = "ai-models-worker"
"""``LABEL_APP`` of every preparation Job and its pods: the controller's pod informer selects it."""
LABEL_OWNER_KIND: Final = f"{GROUP}/owner-kind"
LABEL_OWNER_UID: Final = f"{GROUP}/owner-uid"
"""On a Job, its pods and its Secrets: the UID of the Model or ClusterModel they prepare."""
ANNOTATION_OWNER_NAMESPACE: Final = f"{GROUP}/owner-namespace"
ANNOTATION_OWNER_NAME: Final = f"{GROUP}/owner-name"
LABEL_UPLOAD_SESSION: Final = f"{GROUP}/upload-session"
"""On an upload session's record Secret (api/upload.py): the session's name."""

ANNOTATION_PROGRESS: Final = f"{GROUP}/progress"
"""On the worker's pod: the integer percent (``parse_percent``)."""
ANNOTATION_PROGRESS_DETAIL: Final = f"{GROUP}/progress-detail"
"""On the worker's pod: ``ProgressDetail`` as JSON."""
ANNOTATION_RESULT: Final = f"{GROUP}/result"
"""On the worker's pod, once published: ``WorkerResult`` as JSON."""

ANNOTATION_MODEL: Final = f"{GROUP}/model"
"""On a workload or pod: Models of its namespace it consumes, comma-separated."""
ANNOTATION_CLUSTER_MODEL: Final = f"{GROUP}/clustermodel"
"""On a workload or pod: ClusterModels it consumes, comma-separated."""
ANNOTATION_DIGESTS: Final = f"{GROUP}/model-digests"
"""On a released pod: ``[{kind, name, digest}]``, what its init container fetches."""
ANNOTATION_WAITING: Final = f"{GROUP}/model-waiting"
"""On a gated pod: what it waits for, in words."""
SCHEDULING_GATE: Final = f"{GROUP}/model-ready"
LABEL_GATED: Final = f"{GROUP}/model-gated"
"""``true`` while the pod holds ``SCHEDULING_GATE``: the gate controller watches only these."""

MANIFEST_SOURCE_TYPE_ANNOTATION: Final = f"{GROUP}/source-type"
"""On the artifact's OCI manifest (docs/oci.md): the source provider."""
MANIFEST_RESOLVED_ANNOTATION: Final = f"{GROUP}/resolved"
"""On the artifact's OCI manifest: ``status.resolved`` as canonical JSON."""


def attempt_suffix(retry: str | None) -> str:
    """``-<8 hex of sha256(retry value)>``, or empty for the first attempt: what tells the names
    of one attempt's Job and upload session from those of the attempt before."""
    return "-" + hashlib.sha256(retry.encode()).hexdigest()[:8] if retry else ""


# ---- exit codes and the worker's container ---------------------------------------------------

SUCCESS_EXIT_CODE: Final = 0
PERMANENT_EXIT_CODE: Final = 2
"""Retrying cannot help (bad source, bad weights): the Job's podFailurePolicy fails the Job."""
TRANSIENT_EXIT_CODE: Final = 1
"""The worker's code for a failure worth retrying; the controller treats any code other than
0 and 2 the same way."""

WORKER_CONTAINER: Final = "worker"
"""The container of the Job's pod whose exit and termination message the controller reads."""
TERMINATION_LOG_PATH: Final = "/dev/termination-log"
"""Where the worker writes ``{reason, message, log}``; the Job's ``terminationMessagePath``."""

# ---- the environment the Job gives the worker ------------------------------------------------

ENV_POD_NAME: Final = "POD_NAME"
"""Downward API: the pod the worker reports progress and the result on."""
ENV_POD_NAMESPACE: Final = "POD_NAMESPACE"
ENV_HF_ENDPOINT: Final = "HF_ENDPOINT"
ENV_HF_HUB_DISABLE_TELEMETRY: Final = "HF_HUB_DISABLE_TELEMETRY"
ENV_HF_HOME: Final = "HF_HOME"
ENV_HF_TOKEN_PATH: Final = "HF_TOKEN_PATH"  # noqa: S105 - a variable name, not a token
"""The mounted per-Job token file; the token itself never travels in the environment."""
ENV_OLLAMA_REGISTRY: Final = "OLLAMA_REGISTRY"
ENV_SOURCES_CA_BUNDLE: Final = "SOURCES_CA_BUNDLE"
ENV_DOCKER_CONFIG: Final = "DOCKER_CONFIG"
"""A directory holding ``config.json``: the registry credentials."""
ENV_AI_MODELS_REGISTRY_CA: Final = "AI_MODELS_REGISTRY_CA"
ENV_AI_MODELS_REGISTRY_INSECURE: Final = "AI_MODELS_REGISTRY_INSECURE"
ENV_AI_MODELS_WORKSPACE: Final = "AI_MODELS_WORKSPACE"
ENV_AI_MODELS_PROGRESS_INTERVAL: Final = "AI_MODELS_PROGRESS_INTERVAL"
ENV_AI_MODELS_TRANSFER_CONCURRENCY: Final = "AI_MODELS_TRANSFER_CONCURRENCY"
ENV_AI_MODELS_LOG_FORMAT: Final = "AI_MODELS_LOG_FORMAT"
ENV_AI_MODELS_MOUNT_FROM: Final = "AI_MODELS_MOUNT_FROM"
"""Comma-separated repositories of the same registry that may hold the source's blobs."""
ENV_AI_MODELS_CATALOG_GRANT_FILE: Final = "AI_MODELS_CATALOG_GRANT_FILE"
"""A catalog import: the mounted grant file (``api.catalog_import.GrantFile``)."""
ENV_AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES: Final = "AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES"
"""An upload: the most bytes its archive may unpack to (4 times the session's size limit)."""

JOB_ENV: Final = frozenset(
    {
        ENV_POD_NAME,
        ENV_POD_NAMESPACE,
        ENV_HF_ENDPOINT,
        ENV_HF_HUB_DISABLE_TELEMETRY,
        ENV_HF_HOME,
        ENV_HF_TOKEN_PATH,
        ENV_OLLAMA_REGISTRY,
        ENV_SOURCES_CA_BUNDLE,
        ENV_DOCKER_CONFIG,
        ENV_AI_MODELS_REGISTRY_CA,
        ENV_AI_MODELS_REGISTRY_INSECURE,
        ENV_AI_MODELS_WORKSPACE,
        ENV_AI_MODELS_PROGRESS_INTERVAL,
        ENV_AI_MODELS_TRANSFER_CONCURRENCY,
        ENV_AI_MODELS_LOG_FORMAT,
        ENV_AI_MODELS_MOUNT_FROM,
        ENV_AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES,
        ENV_AI_MODELS_CATALOG_GRANT_FILE,
    }
)
"""Every variable the Job may set (some only when the configuration asks for them)."""

# ---- the result annotation -------------------------------------------------------------------

MAX_REPORT_BYTES: Final = 64 * 1024
"""The most the controller reads of one report annotation; the worker's result stays far below
(inspection bounds every string and list it publishes)."""


class InvalidWorkerResult(ValueError):  # noqa: N818 - named after its condition reason
    """The result annotation is missing, too large or not a ``WorkerResult``; the name is the
    condition reason the controller sets."""


class WorkerResult(ApiModel):
    """``ai.deckhouse.io/result``: what ``prepare`` published, in the exact shapes of
    ``status.artifact``, ``status.resolved`` and ``status.source``; also the JSON line
    ``prepare`` prints."""

    artifact: ArtifactStatus
    resolved: ResolvedMetadata
    source: SourceStatus

    def to_annotation(self) -> str:
        return json.dumps(self.to_wire(), sort_keys=True)


def parse_result(text: str) -> WorkerResult:
    """The result annotation's value, bounded and validated; ``InvalidWorkerResult`` saying where
    it is wrong otherwise."""
    return parse_bounded(
        WorkerResult,
        text,
        limit=MAX_REPORT_BYTES,
        what="the worker's result",
        invalid=InvalidWorkerResult,
        top="",
    )


# ---- the progress annotations ----------------------------------------------------------------

MAX_STAGE_LENGTH: Final = 64
MAX_FILE_LENGTH: Final = 256
_MAX_PERCENT_DIGITS = 10


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A field the controller cannot use is dropped alone: progress is best effort."""
    try:
        return handler(value)
    except ValidationError:
        return None


def _cut(limit: int) -> BeforeValidator:
    return BeforeValidator(lambda value: value[:limit] if isinstance(value, str) else value)


_Lenient = WrapValidator(_or_none)
_Count = Annotated[StrictInt | None, Field(ge=0), _Lenient]


class ProgressDetail(ApiModel):
    """``ai.deckhouse.io/progress-detail``: ``{stage, bytesDone, bytesTotal, bytesPerSecond,
    file}``, each optional. Read leniently: a field of the wrong type or out of range is left
    out, unknown fields are ignored, strings are cut to their bound."""

    model_config = ConfigDict(extra="ignore")

    stage: Annotated[StrictStr | None, _Lenient, _cut(MAX_STAGE_LENGTH)] = None
    bytes_done: _Count = None
    bytes_total: _Count = None
    bytes_per_second: Annotated[
        StrictInt | StrictFloat | None, Field(ge=0, allow_inf_nan=False), _Lenient
    ] = None
    file: Annotated[StrictStr | None, _Lenient, _cut(MAX_FILE_LENGTH)] = None

    def to_annotation(self) -> str:
        return json.dumps(self.to_wire(), sort_keys=True)


def parse_progress_detail(text: str) -> ProgressDetail:
    """The detail annotation's value; an empty ``ProgressDetail`` when it is too large, not JSON
    or not an object."""
    if not text or len(text) > MAX_REPORT_BYTES:
        return ProgressDetail()
    try:
        return ProgressDetail.model_validate_json(text)
    except ValidationError:
        return ProgressDetail()


def parse_percent(text: str) -> int | None:
    """``ai.deckhouse.io/progress``: decimal digits, capped at 100; ``None`` for anything else."""
    digits = text.strip()
    if not (0 < len(digits) <= _MAX_PERCENT_DIGITS and digits.isascii() and digits.isdigit()):
        return None
    return min(int(digits), 100)
