"""The one table from what inspection found to ``supportedEndpointTypes`` and ``supportedFeatures``.

Inspection reduces a model to ``Signals`` (the Hub task, the architecture, the GGUF pooling type,
a chat template, a vision tower…); ``capabilities`` maps them through the rows below, in this
order, and ``render_table`` prints the same rows for ``docs/inspection.md`` (a test keeps the doc
and the code equal):

1. the primary task: the Hub pipeline tag (``TASKS``) if it is in the table, else the model type
   (``MODEL_TYPES``), else the architecture class: a one-label sequence classifier is a reranker,
   a class transformers knows gets the rows of its tasks (``TRANSFORMERS_TASKS``, from the
   generated ``transformers_tasks.py``), another one its suffix (``ARCHITECTURE_SUFFIXES``); else
   for a Diffusers pipeline its class (``DIFFUSERS_PIPELINES``), else for a GGUF without a pooling
   type ``TextGeneration`` (llama.cpp serves such a file as a generative model);
2. additions from evidence in the files: a GGUF pooling type (``GGUF_POOLING``), a
   sentence-transformers layout (``modules.json``) → ``Embeddings``, Ollama's declared
   capabilities (``PROVIDER_CAPABILITIES``), a vision model whose ``text_config`` is a causal or
   seq2seq LM → ``TextGeneration``;
3. inputs: a vision tower/projector → ``VisionInput`` (and ``ImageToText`` for a text generator),
   audio → ``AudioInput``, both → ``MultiModalInput``;
4. a chat template on a text generator → ``Chat``; one that reads ``tools`` → ``ToolCalling``.

Nothing is guessed from names alone: with no row matching, the lists stay empty (None in status).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import get_args

from api.model import EndpointType, Feature
from worker.inspect.transformers_tasks import CLASS_TASKS, TEXT_GENERATOR_MODEL_TYPES
from worker.plan import WeightFormat

Row = tuple[tuple[EndpointType, ...], tuple[Feature, ...]]

TASKS: Mapping[str, Row] = {
    "text-generation": (("TextGeneration",), ()),
    "text2text-generation": (("TextGeneration",), ()),
    "summarization": (("TextGeneration",), ()),
    "conversational": (("TextGeneration",), ()),
    "feature-extraction": (("Embeddings",), ()),
    "sentence-similarity": (("Embeddings",), ()),
    "text-ranking": (("Rerank",), ()),
    "translation": (("Translation",), ()),
    "automatic-speech-recognition": (("SpeechToText",), ("AudioInput",)),
    "text-to-speech": (("TextToSpeech",), ("AudioOutput",)),
    "text-to-audio": (("AudioGeneration",), ("AudioOutput",)),
    "audio-text-to-text": (("TextGeneration",), ("AudioInput",)),
    "image-classification": (("ImageClassification",), ("VisionInput",)),
    "object-detection": (("ObjectDetection",), ("VisionInput",)),
    "image-segmentation": (("ImageSegmentation",), ("VisionInput",)),
    "image-to-text": (("ImageToText",), ("VisionInput",)),
    "image-text-to-text": (("ImageToText", "TextGeneration"), ("VisionInput",)),
    "visual-question-answering": (("VisualQuestionAnswering",), ("VisionInput",)),
    "video-text-to-text": (("TextGeneration",), ("VideoInput",)),
    "any-to-any": ((), ("MultiModalInput",)),
    "text-to-image": (("ImageGeneration",), ("ImageOutput",)),
    "image-to-image": (("ImageGeneration",), ("VisionInput", "ImageOutput")),
    "text-to-video": (("VideoGeneration",), ("VideoOutput",)),
    "image-to-video": (("VideoGeneration",), ("VisionInput", "VideoOutput")),
}
"""Hugging Face pipeline tag → row."""

MODEL_TYPES: Mapping[str, Row] = {
    "whisper": (("SpeechToText",), ("AudioInput",)),
    "marian": (("Translation",), ()),
    "m2m_100": (("Translation",), ()),
    "fsmt": (("Translation",), ()),
}
"""``config.json`` ``model_type`` → row (checked before the class suffix)."""

TRANSFORMERS_TASKS: Mapping[str, Row] = {
    "CAUSAL_LM": (("TextGeneration",), ()),
    "SEQ_TO_SEQ_CAUSAL_LM": (("TextGeneration",), ()),
    "IMAGE_TEXT_TO_TEXT": (("ImageToText",), ("VisionInput",)),
    "TEXT_RECOGNITION": (("ImageToText",), ("VisionInput",)),
    "VISUAL_QUESTION_ANSWERING": (("VisualQuestionAnswering",), ("VisionInput",)),
    "DOCUMENT_QUESTION_ANSWERING": (("VisualQuestionAnswering",), ("VisionInput",)),
    "SPEECH_SEQ_2_SEQ": (("SpeechToText",), ("AudioInput",)),
    "CTC": (("SpeechToText",), ("AudioInput",)),
    "RNNT": (("SpeechToText",), ("AudioInput",)),
    "TDT": (("SpeechToText",), ("AudioInput",)),
    "TEXT_TO_WAVEFORM": (("TextToSpeech",), ("AudioOutput",)),
    "TEXT_TO_SPECTROGRAM": (("TextToSpeech",), ("AudioOutput",)),
    "IMAGE_CLASSIFICATION": (("ImageClassification",), ("VisionInput",)),
    "ZERO_SHOT_IMAGE_CLASSIFICATION": (("ImageClassification",), ("VisionInput",)),
    "OBJECT_DETECTION": (("ObjectDetection",), ("VisionInput",)),
    "ZERO_SHOT_OBJECT_DETECTION": (("ObjectDetection",), ("VisionInput",)),
    "IMAGE_SEGMENTATION": (("ImageSegmentation",), ("VisionInput",)),
    "SEMANTIC_SEGMENTATION": (("ImageSegmentation",), ("VisionInput",)),
    "INSTANCE_SEGMENTATION": (("ImageSegmentation",), ("VisionInput",)),
    "UNIVERSAL_SEGMENTATION": (("ImageSegmentation",), ("VisionInput",)),
    "IMAGE_TO_IMAGE": (("ImageGeneration",), ("VisionInput", "ImageOutput")),
    "CAUSAL_IMAGE_MODELING": (("ImageGeneration",), ("ImageOutput",)),
    "RETRIEVAL": (("Embeddings",), ("VisionInput",)),
    "MULTIMODAL_LM": (("TextGeneration",), ("AudioInput",)),
}
"""transformers task (``MODEL_FOR_<task>_MAPPING_NAMES``) → row, for a class transformers knows;
a class gets the rows of all its tasks. ``MULTIMODAL_LM`` counts only without
``IMAGE_TEXT_TO_TEXT`` (then it is a speech/omni LM: Qwen2-Audio, Voxtral); with it, the image
row decides, so an image captioner (BLIP) is not a text generator. Other tasks (masked LM,
classification, extractive QA, backbones…) serve no endpoint type of the API."""

RERANK: Row = (("Rerank",), ())
"""A ``*ForSequenceClassification`` with one label (``num_labels`` or ``id2label``): a
cross-encoder scoring (query, document) pairs."""

ARCHITECTURE_SUFFIXES: tuple[tuple[str, Row], ...] = (
    ("ForCausalLM", (("TextGeneration",), ())),
    ("LMHeadModel", (("TextGeneration",), ())),
    ("ForSpeechSeq2Seq", (("SpeechToText",), ("AudioInput",))),
    ("ForCTC", (("SpeechToText",), ("AudioInput",))),
    ("ForTextToSpeech", (("TextToSpeech",), ("AudioOutput",))),
    ("ForTextToWaveform", (("TextToSpeech",), ("AudioOutput",))),
    ("ForImageClassification", (("ImageClassification",), ("VisionInput",))),
    ("ForObjectDetection", (("ObjectDetection",), ("VisionInput",))),
    ("ForSemanticSegmentation", (("ImageSegmentation",), ("VisionInput",))),
    ("ForInstanceSegmentation", (("ImageSegmentation",), ("VisionInput",))),
    ("ForUniversalSegmentation", (("ImageSegmentation",), ("VisionInput",))),
    ("ForVision2Seq", (("ImageToText",), ("VisionInput",))),
    ("ForImageTextToText", (("ImageToText", "TextGeneration"), ("VisionInput",))),
    ("ForVisualQuestionAnswering", (("VisualQuestionAnswering",), ("VisionInput",))),
    ("ForConditionalGeneration", (("TextGeneration",), ())),
)
"""Architecture class suffix → row, for a class the generated table does not know (newer than
the pinned transformers, or custom code); the first matching suffix wins."""

DIFFUSERS_PIPELINES: tuple[tuple[str, Row], ...] = (
    ("Video", (("VideoGeneration",), ("VideoOutput",))),
    ("Audio", (("AudioGeneration",), ("AudioOutput",))),
    ("Music", (("AudioGeneration",), ("AudioOutput",))),
    ("Img2Img", (("ImageGeneration",), ("VisionInput", "ImageOutput"))),
    ("Inpaint", (("ImageGeneration",), ("VisionInput", "ImageOutput"))),
    ("StableDiffusion", (("ImageGeneration",), ("ImageOutput",))),
    ("Flux", (("ImageGeneration",), ("ImageOutput",))),
    ("PixArt", (("ImageGeneration",), ("ImageOutput",))),
    ("Kandinsky", (("ImageGeneration",), ("ImageOutput",))),
    ("Sana", (("ImageGeneration",), ("ImageOutput",))),
)
"""Diffusers ``model_index.json`` ``_class_name`` substring → row; the first match wins."""

GGUF_POOLING: Mapping[str, Row] = {
    "mean": (("Embeddings",), ()),
    "cls": (("Embeddings",), ()),
    "last": (("Embeddings",), ()),
    "rank": (("Rerank",), ()),
}
"""GGUF ``<arch>.pooling_type`` → row (added to the primary row)."""

PROVIDER_CAPABILITIES: Mapping[str, Row] = {
    "completion": (("TextGeneration",), ()),
    "embedding": (("Embeddings",), ()),
    "vision": ((), ("VisionInput",)),
    "audio": ((), ("AudioInput",)),
    "tools": ((), ("ToolCalling",)),
}
"""Ollama image-config ``capabilities`` → row (added)."""

_ENDPOINT_ORDER = {name: i for i, name in enumerate(get_args(EndpointType))}
_FEATURE_ORDER = {name: i for i, name in enumerate(get_args(Feature))}
_GENERATORS = frozenset({"TextGeneration", "ImageToText"})


@dataclass(frozen=True)
class Signals:
    format: WeightFormat
    task: str | None = None
    """The Hub pipeline tag."""
    architecture: str | None = None
    """The transformers class (``LlamaForCausalLM``) or the GGUF architecture (``llama``)."""
    model_type: str | None = None
    pipeline_class: str | None = None
    gguf_pooling: str | None = None
    sentence_transformers: bool = False
    chat_template: bool = False
    template_tools: bool = False
    vision: bool = False
    audio: bool = False
    provider_capabilities: frozenset[str] = frozenset()
    label_count: int | None = None
    """Labels of a classification head (config.json ``num_labels`` or ``id2label``)."""
    text_model_type: str | None = None
    """``text_config.model_type`` of a multimodal model."""


@dataclass(frozen=True)
class Capabilities:
    endpoint_types: tuple[EndpointType, ...]
    features: tuple[Feature, ...]


def capabilities(signals: Signals) -> Capabilities:
    rows = [_primary(signals), *_additions(signals)]
    endpoints: set[EndpointType] = {e for row in rows for e in row[0]}
    features: set[Feature] = {f for row in rows for f in row[1]}
    if signals.vision:
        features.add("VisionInput")
        if "TextGeneration" in endpoints:
            endpoints.add("ImageToText")
    if signals.audio:
        features.add("AudioInput")
    if {"VisionInput", "AudioInput"} <= features:
        features.add("MultiModalInput")
    if signals.chat_template and endpoints & _GENERATORS:
        endpoints.add("Chat")
    if "Chat" in endpoints and signals.template_tools:
        features.add("ToolCalling")
    if "Chat" not in endpoints:
        features.discard("ToolCalling")  # declared tools need a chat endpoint to be called from
    return Capabilities(
        endpoint_types=tuple(sorted(endpoints, key=_ENDPOINT_ORDER.__getitem__)),
        features=tuple(sorted(features, key=_FEATURE_ORDER.__getitem__)),
    )


def _primary(signals: Signals) -> Row:
    if signals.task is not None and signals.task in TASKS:
        return TASKS[signals.task]
    if signals.model_type is not None and signals.model_type in MODEL_TYPES:
        return MODEL_TYPES[signals.model_type]
    if signals.format != "GGUF" and signals.architecture:
        row = _architecture_row(signals.architecture, signals.label_count)
        if row:
            return row
    if signals.format == "Diffusers" and signals.pipeline_class:
        return _first_match(signals.pipeline_class, DIFFUSERS_PIPELINES, suffix=False) or ((), ())
    if signals.format == "GGUF" and signals.gguf_pooling in (None, "none"):
        return (("TextGeneration",), ())
    return ((), ())


def _architecture_row(name: str, label_count: int | None) -> Row | None:
    if name.endswith("ForSequenceClassification") and label_count == 1:
        return RERANK
    tasks = CLASS_TASKS.get(name)
    if tasks is None:
        return _first_match(name, ARCHITECTURE_SUFFIXES, suffix=True)
    if "IMAGE_TEXT_TO_TEXT" in tasks:
        tasks = tuple(task for task in tasks if task != "MULTIMODAL_LM")
    rows = [TRANSFORMERS_TASKS[task] for task in tasks if task in TRANSFORMERS_TASKS]
    return (
        tuple(dict.fromkeys(e for row in rows for e in row[0])),
        tuple(dict.fromkeys(f for row in rows for f in row[1])),
    )


def _first_match(name: str, table: Iterable[tuple[str, Row]], *, suffix: bool) -> Row | None:
    for pattern, row in table:
        if name.endswith(pattern) if suffix else pattern in name:
            return row
    return None


def _additions(signals: Signals) -> list[Row]:
    rows: list[Row] = []
    pooling = signals.gguf_pooling
    if signals.format == "GGUF" and pooling is not None and pooling in GGUF_POOLING:
        rows.append(GGUF_POOLING[pooling])
    if signals.sentence_transformers:
        rows.append((("Embeddings",), ()))
    if signals.vision and signals.text_model_type in TEXT_GENERATOR_MODEL_TYPES:
        rows.append((("TextGeneration",), ()))
    rows.extend(PROVIDER_CAPABILITIES[c] for c in sorted(signals.provider_capabilities)
                if c in PROVIDER_CAPABILITIES)  # fmt: skip
    return rows


def render_table() -> str:
    """The rows above as the Markdown table of ``docs/inspection.md``."""
    lines = ["| signal | value | endpoint types | features |", "|---|---|---|---|"]
    sections: tuple[tuple[str, Iterable[tuple[str, Row]]], ...] = (
        ("Hub pipeline tag", TASKS.items()),
        ("config.json model_type", MODEL_TYPES.items()),
        ("transformers task of the class", TRANSFORMERS_TASKS.items()),
        ("architecture class suffix", ARCHITECTURE_SUFFIXES),
        ("Diffusers pipeline class contains", DIFFUSERS_PIPELINES),
        ("GGUF pooling_type", GGUF_POOLING.items()),
        ("Ollama capability", PROVIDER_CAPABILITIES.items()),
    )
    for signal, rows in sections:
        for value, (endpoints, features) in rows:
            lines.append(
                f"| {signal} | `{value}` | {', '.join(endpoints) or '—'} | "
                f"{', '.join(features) or '—'} |"
            )
    return "\n".join(lines) + "\n"
