"""Pure builders of the CNCF ModelPack v1 artifact: the model config and the OCI image manifest.

No I/O and no clock: the same plan, metadata and layers give the same bytes, hence the same
manifest digest (JSON with sorted keys and no spaces, layers in the plan's order). Layers are the
files themselves ("raw" media types), so a layer's digest, its diffId and the file's sha256 are
one value.

The config holds only what the official schema allows (``additionalProperties: false``
throughout); the rest of what we know — the full resolved metadata, the source — goes into
manifest annotations. The mapping is documented in ``docs/oci.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api.model import ResolvedMetadata
from api.protocol import MANIFEST_RESOLVED_ANNOTATION, MANIFEST_SOURCE_TYPE_ANNOTATION
from worker.plan import FileRole, SourcePlan

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
LAYER_MEDIA_TYPES: Mapping[FileRole, str] = {
    "weight": "application/vnd.cncf.model.weight.v1.raw",
    "config": "application/vnd.cncf.model.weight.config.v1.raw",
    "doc": "application/vnd.cncf.model.doc.v1.raw",
}

FILEPATH_ANNOTATION = "org.cncf.model.filepath"
SOURCE_ANNOTATION = "org.opencontainers.image.source"
REVISION_ANNOTATION = "org.opencontainers.image.revision"
TITLE_ANNOTATION = "org.opencontainers.image.title"

# Endpoint type -> (input modalities, output modalities) in the schema's vocabulary.
_ENDPOINT_MODALITIES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Chat": (("text",), ("text",)),
    "TextGeneration": (("text",), ("text",)),
    "Embeddings": (("text",), ("embedding",)),
    "Rerank": (("text",), ("other",)),
    "SpeechToText": (("audio",), ("text",)),
    "TextToSpeech": (("text",), ("audio",)),
    "Translation": (("text",), ("text",)),
    "ImageClassification": (("image",), ("other",)),
    "ObjectDetection": (("image",), ("other",)),
    "ImageSegmentation": (("image",), ("image",)),
    "ImageToText": (("image",), ("text",)),
    "VisualQuestionAnswering": (("image", "text"), ("text",)),
    "ImageGeneration": (("text",), ("image",)),
    "VideoGeneration": (("text",), ("video",)),
    "AudioGeneration": (("text",), ("audio",)),
}
_FEATURE_MODALITIES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "VisionInput": (("image",), ()),
    "AudioInput": (("audio",), ()),
    "AudioOutput": ((), ("audio",)),
    "ImageOutput": ((), ("image",)),
    "VideoInput": (("video",), ()),
    "VideoOutput": ((), ("video",)),
}
_MODALITY_ORDER = ("text", "image", "audio", "video", "embedding", "other")

# safetensors / torch dtype names -> the precision vocabulary of the ModelPack docs.
_PRECISIONS: Mapping[str, str] = {
    "F64": "fp64", "F32": "fp32", "F16": "fp16", "BF16": "bf16",
    "F8_E4M3": "fp8", "F8_E5M2": "fp8", "F8_E8M0": "fp8", "F4": "fp4", "F6_E2M3": "fp6",
    "F6_E3M2": "fp6", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U8": "uint8", "BOOL": "bool",
    "float64": "fp64", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16",
    "int8": "int8",
}  # fmt: skip
DOMINANT_SHARE = 0.95
"""A dtype holding at least this share of the weight bytes is the model's precision."""
_SCALES = (("Q", 10**15), ("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3))


@dataclass(frozen=True)
class Layer:
    """One pushed file: the manifest's layer descriptor."""

    path: str
    role: FileRole
    digest: str
    size: int


def canonical_json(document: Any) -> bytes:
    """The one serialization of every document we hash: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def param_size(parameter_count: int) -> str:
    """``<count><scale>`` with at most one decimal, as the ModelPack config documents it."""
    for letter, scale in _SCALES:
        if parameter_count >= scale or letter == "K":
            count = max(0.1, round(parameter_count / scale, 1))  # a toy model is "0.1K", not "0K"
            if count >= 1000 and letter != "Q":  # 999.96M rounds to 1000.0M: that is 1B
                return param_size(int(1000 * scale))
            text = f"{count:.1f}".removesuffix(".0")
            return f"{text}{letter}"
    raise AssertionError("unreachable")


def precision_from_dtypes(dtype_bytes: Mapping[str, int]) -> str | None:
    """``bf16``, ``fp16``… when one dtype holds the weights (≥95% of bytes), ``mixed`` when not."""
    total = sum(dtype_bytes.values())
    if total <= 0:
        return None
    dtype, largest = max(dtype_bytes.items(), key=lambda item: (item[1], item[0]))
    if largest < DOMINANT_SHARE * total:
        return "mixed"
    return _PRECISIONS.get(dtype, dtype.lower())


def _modalities(resolved: ResolvedMetadata) -> tuple[list[str], list[str]]:
    inputs: set[str] = set()
    outputs: set[str] = set()
    pairs = [_ENDPOINT_MODALITIES.get(e, ((), ())) for e in resolved.supported_endpoint_types or []]
    pairs += [_FEATURE_MODALITIES.get(f, ((), ())) for f in resolved.supported_features or []]
    for ins, outs in pairs:
        inputs.update(ins)
        outputs.update(outs)
    return (
        [m for m in _MODALITY_ORDER if m in inputs],
        [m for m in _MODALITY_ORDER if m in outputs],
    )


def _capabilities(resolved: ResolvedMetadata) -> dict[str, Any]:
    inputs, outputs = _modalities(resolved)
    capabilities: dict[str, Any] = {}
    if inputs:
        capabilities["inputTypes"] = inputs
    if outputs:
        capabilities["outputTypes"] = outputs
    if resolved.supported_features is not None:  # known features: a missing one is a "no"
        capabilities["toolUsage"] = "ToolCalling" in resolved.supported_features
    return capabilities


def _model_config(
    plan: SourcePlan, resolved: ResolvedMetadata, precision: str | None
) -> dict[str, Any]:
    config: dict[str, Any] = {"format": (resolved.format or plan.format).lower()}
    if resolved.architecture:
        config["architecture"] = resolved.architecture
    if resolved.parameter_count:
        config["paramSize"] = param_size(resolved.parameter_count)
    if precision:
        config["precision"] = precision
    if resolved.quantization:
        config["quantization"] = resolved.quantization.lower()
    capabilities = _capabilities(resolved)
    if capabilities:
        config["capabilities"] = capabilities
    return config


def build_config(
    plan: SourcePlan,
    resolved: ResolvedMetadata,
    layers: Sequence[Layer],
    *,
    precision: str | None = None,
) -> bytes:
    """The ModelPack config blob (``application/vnd.cncf.model.config.v1+json``)."""
    if not layers:
        raise ValueError("a ModelPack artifact needs at least one layer")
    descriptor: dict[str, Any] = {"name": plan.name, "sourceURL": plan.recorded_url}
    if resolved.family:
        descriptor["family"] = resolved.family
    if plan.revision:
        descriptor["revision"] = plan.revision
    document = {
        "descriptor": descriptor,
        "config": _model_config(plan, resolved, precision),
        "modelfs": {"type": "layers", "diffIds": [layer.digest for layer in layers]},
    }
    return canonical_json(document)


def _descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def manifest_annotations(plan: SourcePlan, resolved: ResolvedMetadata) -> dict[str, str]:
    annotations = {
        SOURCE_ANNOTATION: plan.recorded_url,
        TITLE_ANNOTATION: plan.name,
        MANIFEST_RESOLVED_ANNOTATION: canonical_json(resolved.to_wire()).decode(),
    }
    if plan.revision:
        annotations[REVISION_ANNOTATION] = plan.revision
    if plan.source_type:
        annotations[MANIFEST_SOURCE_TYPE_ANNOTATION] = plan.source_type
    return annotations


def build_manifest(
    config_digest: str, config_size: int, layers: Iterable[Layer], annotations: Mapping[str, str]
) -> bytes:
    """The OCI image manifest of the artifact; its sha256 is the artifact's digest."""
    layer_descriptors = [
        {
            **_descriptor(LAYER_MEDIA_TYPES[layer.role], layer.digest, layer.size),
            # The title is the name `oras pull` writes the file under (it ignores the rest).
            "annotations": {FILEPATH_ANNOTATION: layer.path, TITLE_ANNOTATION: layer.path},
        }
        for layer in layers
    ]
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": _descriptor(CONFIG_MEDIA_TYPE, config_digest, config_size),
        "layers": layer_descriptors,
        "annotations": dict(annotations),
    }
    return canonical_json(document)
