"""Model (namespaced) and ClusterModel (cluster-scoped): specs, statuses and the resources.

Field for field with the API reference (``docs/api-reference.txt``); the CRDs in ``crds/`` are
generated from these classes. Where the two kinds differ only in wording, the text follows the
reference for each kind. The CEL rules attached to ``spec.source`` are enforced by the API server;
the same rules are checked here too, so the worker and the controller can validate objects
without a cluster.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from api.meta import API_VERSION, ApiModel, Condition, DnsSubdomainName, ObjectMeta

SOURCE_URL_PATTERN = (
    r"^https:\/\/(((www\.)?huggingface\.co|hf\.co)\/.+|"
    r"(www\.)?ollama\.com\/library\/[^:\/?#]+(:[^\/?#]+)?([\/?#].*)?)$"
)
HUGGING_FACE_URL_PREFIX = re.compile(r"^https://((www\.)?huggingface\.co|hf\.co)/")

Phase = Literal["Pending", "WaitForUpload", "Publishing", "Ready", "Failed", "Deleting"]
SourceType = Literal["HuggingFace", "Ollama", "Upload", "Catalog"]
ModelFormat = Literal["Safetensors", "GGUF", "Diffusers"]
EndpointType = Literal[
    "Chat",
    "TextGeneration",
    "Embeddings",
    "Rerank",
    "SpeechToText",
    "TextToSpeech",
    "Translation",
    "ImageClassification",
    "ObjectDetection",
    "ImageSegmentation",
    "ImageToText",
    "VisualQuestionAnswering",
    "ImageGeneration",
    "VideoGeneration",
    "AudioGeneration",
]
Feature = Literal[
    "VisionInput",
    "AudioInput",
    "AudioOutput",
    "ImageOutput",
    "VideoInput",
    "VideoOutput",
    "MultiModalInput",
    "ToolCalling",
]
CapabilityName = Annotated[str, StringConstraints(min_length=1, max_length=128)]

# CEL rules of spec.source. ``self == oldSelf`` is a transition rule: it runs on updates only.
EXACTLY_ONE_SOURCE_RULE: JsonDict = {
    "rule": "[has(self.url), has(self.upload), has(self.catalog)].filter(x, x).size() == 1",
    "message": "exactly one of url, upload or catalog must be set",
}


def immutable_source_rule(kind: str) -> JsonDict:
    """The transition rule; its message names the only fix a user has (a new object)."""
    return {
        "rule": "self == oldSelf",
        "message": (
            f"spec.source is immutable: to use another source, delete the {kind} and create it "
            f"again with the new source, or create a new {kind} under another name"
        ),
    }


AUTH_SECRET_RULE: JsonDict = {
    "rule": (
        "!has(self.authSecretRef) || (has(self.url) && ("
        "self.url.startsWith('https://huggingface.co/') || "
        "self.url.startsWith('https://www.huggingface.co/') || "
        "self.url.startsWith('https://hf.co/')))"
    ),
    "message": "authSecretRef is supported only together with a Hugging Face url",
    "fieldPath": ".authSecretRef",
}


# ---- spec -------------------------------------------------------------------------------------


class SecretReference(ApiModel):
    name: Annotated[str, Field(min_length=1, description="Name is the Secret name.")]


class CatalogReference(ApiModel):
    name: Annotated[DnsSubdomainName, Field(description="Name is the public catalog model name.")]
    source_name: Annotated[
        DnsSubdomainName | None,
        Field(
            description=(
                "SourceName selects a ModelCatalogSource. When omitted, the controller may use "
                "the only Ready ModelCatalogSource in the cluster."
            )
        ),
    ] = None
    version: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=128,
            description=(
                "Version selects a catalog version when the upstream exposes more than one "
                "active version for the same name."
            ),
        ),
    ] = None


class UploadRequest(ApiModel):
    """An empty object: its presence asks for an upload session."""


SourceUrl = Annotated[
    str,
    Field(
        min_length=1,
        pattern=SOURCE_URL_PATTERN,
        description="URL points to a Hugging Face repository or an Ollama registry reference.",
    ),
]
UPLOAD_DESCRIPTION = (
    "Upload requests a controller-owned upload session for a local file or archive."
)


def _check_exactly_one(url: str | None, upload: object, catalog: object) -> None:
    chosen = [name for name, v in (("url", url), ("upload", upload), ("catalog", catalog)) if v]
    if len(chosen) != 1:
        raise ValueError(str(EXACTLY_ONE_SOURCE_RULE["message"]))


class ClusterModelSource(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                immutable_source_rule("ClusterModel"),
                EXACTLY_ONE_SOURCE_RULE,
            ]
        }
    )

    catalog: Annotated[
        CatalogReference | None,
        Field(description="Catalog imports a cluster model entry from a ModelCatalogSource."),
    ] = None
    upload: Annotated[UploadRequest | None, Field(description=UPLOAD_DESCRIPTION)] = None
    url: SourceUrl | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ClusterModelSource:
        _check_exactly_one(self.url, self.upload is not None, self.catalog)
        return self


class ModelSource(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                immutable_source_rule("Model"),
                EXACTLY_ONE_SOURCE_RULE,
                AUTH_SECRET_RULE,
            ]
        }
    )

    auth_secret_ref: Annotated[
        SecretReference | None,
        Field(
            description=(
                "AuthSecretRef names a Secret from the same namespace as the Model. It is "
                "supported for private Hugging Face sources."
            )
        ),
    ] = None
    catalog: Annotated[
        CatalogReference | None,
        Field(description="Catalog imports a model entry from a ModelCatalogSource."),
    ] = None
    upload: Annotated[UploadRequest | None, Field(description=UPLOAD_DESCRIPTION)] = None
    url: SourceUrl | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        _check_exactly_one(self.url, self.upload is not None, self.catalog)
        if self.auth_secret_ref is not None and not (
            self.url and HUGGING_FACE_URL_PREFIX.match(self.url)
        ):
            raise ValueError(str(AUTH_SECRET_RULE["message"]))
        return self


class ModelSpec(ApiModel):
    source: ModelSource


class ClusterModelSpec(ApiModel):
    source: ClusterModelSource


# ---- status -----------------------------------------------------------------------------------


class ArtifactStatus(ApiModel):
    digest: Annotated[
        str | None, Field(description="Digest is the digest of the prepared OCI artifact.")
    ] = None
    kind: Annotated[
        Literal["OCI"] | None,
        Field(description="Kind is the artifact location kind exposed by the public API."),
    ] = None
    media_type: Annotated[
        str | None, Field(description="MediaType is the OCI artifact media type.")
    ] = None
    size_bytes: Annotated[
        int | None, Field(ge=1, description="SizeBytes is the prepared OCI artifact size.")
    ] = None


class SourceCapabilities(ApiModel):
    features: Annotated[
        list[CapabilityName] | None,
        Field(description="Features are provider-specific feature names."),
    ] = None
    provider: Annotated[
        SourceType | None,
        Field(description="Provider is the source provider that supplied the capabilities."),
    ] = None
    tasks: Annotated[
        list[CapabilityName] | None, Field(description="Tasks are provider-specific task names.")
    ] = None


class ResolvedMetadata(ApiModel):
    architecture: Annotated[
        str | None,
        Field(description="Architecture is the model architecture when it is available."),
    ] = None
    context_window_tokens: Annotated[
        int | None,
        Field(
            ge=1, description="ContextWindowTokens is the context window size when it is available."
        ),
    ] = None
    family: Annotated[
        str | None, Field(description="Family is the model family inferred from source metadata.")
    ] = None
    format: Annotated[
        ModelFormat | None, Field(description="Format is the resolved input format.")
    ] = None
    parameter_count: Annotated[
        int | None,
        Field(
            ge=1,
            description="ParameterCount is the number of model parameters when it is available.",
        ),
    ] = None
    quantization: Annotated[
        str | None,
        Field(description="Quantization is the model quantization when it is available."),
    ] = None
    source_capabilities: Annotated[
        SourceCapabilities | None,
        Field(
            description=(
                "SourceCapabilities are provider-level capabilities discovered from source "
                "metadata."
            )
        ),
    ] = None
    supported_endpoint_types: list[EndpointType] | None = None
    supported_features: list[Feature] | None = None


class CatalogProvenance(ApiModel):
    catalog_revision: Annotated[
        str | None,
        Field(description="CatalogRevision is the upstream catalog revision used for resolution."),
    ] = None
    name: Annotated[
        str | None,
        Field(min_length=1, description="Name is the resolved public catalog model name."),
    ] = None
    remote_digest: Annotated[
        str | None,
        Field(description="RemoteDigest is the pinned upstream OCI artifact digest."),
    ] = None
    source_name: Annotated[
        str | None,
        Field(min_length=1, description="SourceName is the resolved ModelCatalogSource name."),
    ] = None
    version: Annotated[
        str | None,
        Field(description="Version is the resolved catalog version when one was selected."),
    ] = None


class SourceStatus(ApiModel):
    catalog: Annotated[
        CatalogProvenance | None,
        Field(
            description="Catalog contains frozen external catalog provenance for catalog imports."
        ),
    ] = None
    resolved_revision: Annotated[
        str | None,
        Field(
            description=(
                "ResolvedRevision is the source revision, tag, or digest when the provider "
                "exposes one."
            )
        ),
    ] = None
    resolved_type: Annotated[
        SourceType | None,
        Field(description="ResolvedType is the source provider detected by the controller."),
    ] = None


class UploadStatus(ApiModel):
    expires_at: Annotated[
        datetime | None, Field(description="ExpiresAt is the upload session expiration time.")
    ] = None
    secret_name: Annotated[
        str | None,
        Field(
            min_length=1,
            description=(
                "SecretName points to the Secret containing the upload URL and bearer token. The "
                "Secret key names are fixed by the controller contract and are not part of status."
            ),
        ),
    ] = None
    secret_namespace: Annotated[
        str | None,
        Field(
            min_length=1,
            description=(
                "SecretNamespace is the namespace of the Secret containing the upload URL and "
                "bearer token."
            ),
        ),
    ] = None


OBSERVED_GENERATION_DESCRIPTION = (
    "ObservedGeneration is the latest metadata.generation reconciled by the controller."
)
PHASE_DESCRIPTION = "Phase is the high-level model preparation lifecycle phase."
PROGRESS_TEMPLATE = (
    "Progress reports bounded controller-computed completion percentage for {flows} when "
    "runtime progress is available."
)


class ClusterModelStatus(ApiModel):
    artifact: ArtifactStatus | None = None
    conditions: list[Condition] | None = None
    observed_generation: Annotated[
        int | None, Field(description=OBSERVED_GENERATION_DESCRIPTION)
    ] = None
    phase: Annotated[Phase | None, Field(description=PHASE_DESCRIPTION)] = None
    progress: Annotated[
        str | None,
        Field(description=PROGRESS_TEMPLATE.format(flows="model preparation flows")),
    ] = None
    resolved: ResolvedMetadata | None = None
    source: SourceStatus | None = None
    upload: UploadStatus | None = None


class ModelStatus(ClusterModelStatus):
    progress: Annotated[
        str | None,
        Field(description=PROGRESS_TEMPLATE.format(flows="upload and model preparation flows")),
    ] = None


# ---- resources --------------------------------------------------------------------------------


class Model(ApiModel):
    """Model describes one namespace-scoped model prepared from a remote source, upload session,
    or external catalog."""

    api_version: Literal["ai.deckhouse.io/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["Model"] = "Model"
    metadata: ObjectMeta
    spec: Annotated[
        ModelSpec,
        Field(
            description="ModelSpec declares the immutable source for one namespace-scoped model."
        ),
    ]
    status: Annotated[
        ModelStatus | None,
        Field(
            description=(
                "ModelStatus reports preparation state, upload session details, artifact digest, "
                "and resolved model metadata for a namespaced Model."
            )
        ),
    ] = None


class ClusterModel(ApiModel):
    """ClusterModel describes one cluster-scoped shared model."""

    api_version: Literal["ai.deckhouse.io/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["ClusterModel"] = "ClusterModel"
    metadata: ObjectMeta
    spec: Annotated[
        ClusterModelSpec,
        Field(
            description=(
                "ClusterModelSpec declares the immutable source for one cluster-scoped model."
            )
        ),
    ]
    status: Annotated[
        ClusterModelStatus | None,
        Field(
            description=(
                "ClusterModelStatus reports preparation state, artifact digest, and resolved model "
                "metadata for a cluster-scoped ClusterModel."
            )
        ),
    ] = None


def parse_model(obj: dict[str, Any]) -> Model | ClusterModel:
    """Parses a Model or ClusterModel object as read from the API server."""
    if obj.get("kind") == "ClusterModel":
        return ClusterModel.model_validate(obj)
    return Model.model_validate(obj)
