"""The capability table against transformers' own architecture → task mappings.

``transformers.models.auto.modeling_auto`` keeps, per task, which architecture classes serve it
(the ``MODEL_FOR_*_MAPPING_NAMES`` dicts: model type → class name or tuple of names; importable
without torch). The worker never imports transformers: ``worker/inspect/transformers_tasks.py``
is generated from them and committed, and this module

- checks that file is what the installed (pinned) transformers gives: regenerate it with
  ``.venv/bin/python -m tests.unit.worker.inspect.test_architectures --write``;
- computes, for EVERY class name transformers knows, our endpoint types and features from the
  class name alone (``capabilities`` with only ``architecture`` set) and compares them with
  ``EXPECTED``, derived here from the tasks whose mapping holds the class; the only differences
  allowed are ``EXCEPTIONS``, each with its reason (docs/inspection.md has the same table).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

import pytest

from api.model import EndpointType, Feature
from worker.inspect import transformers_tasks
from worker.inspect.capabilities import Row, Signals, capabilities

MODULE = Path(transformers_tasks.__file__)

EXPECTED: Mapping[str, Row] = {
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
}
"""transformers task (the ``MODEL_FOR_<task>_MAPPING_NAMES`` infix) → row, written here apart
from the code. Every other task (masked LM, sequence/token classification, extractive QA,
backbones, depth, audio classification, time series, base models…) serves no endpoint type of
the API: its classes get none. ``MULTIMODAL_LM`` is special, see ``expected``."""

MULTIMODAL_AUDIO: Row = (("TextGeneration",), ("AudioInput",))
"""``MULTIMODAL_LM`` without ``IMAGE_TEXT_TO_TEXT``: the speech/omni LMs (Qwen2-Audio, Voxtral,
Granite Speech…), text generation from audio. With it, the image row decides: BLIP captions
images, and only a causal language model inside a vision model (``text_config.model_type``,
known from config.json, not from the class) adds ``TextGeneration``."""

EXCEPTIONS: Mapping[str, tuple[Row, str]] = {}
"""Class → (our row, why it differs from ``EXPECTED``). A one-label sequence classifier is a
reranker (``Rerank``), but that depends on config.json (``num_labels``/``id2label``), not on
the class name, so it is tested in ``test_capabilities`` and needs no entry here."""


_READ_TRANSFORMERS = """
import importlib, json, transformers
# The module itself: ``from transformers.models.auto import modeling_auto`` gives a stand-in
# that asks for torch.
auto = importlib.import_module("transformers.models.auto.modeling_auto")
tasks = {}
for attribute in sorted(dir(auto)):
    if attribute.startswith("MODEL_") and attribute.endswith("_MAPPING_NAMES"):
        # MODEL_MAPPING_NAMES (base models) -> MODEL; MODEL_FOR_CAUSAL_LM_MAPPING_NAMES -> CAUSAL_LM
        task = attribute.removesuffix("_MAPPING_NAMES").removeprefix("MODEL_FOR_")
        names = set()
        for value in getattr(auto, attribute).values():
            names.update(value if isinstance(value, (tuple, list)) else [value])
        tasks[task] = sorted(names)
generators = set(auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
generators |= set(auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
print(json.dumps({"version": transformers.__version__, "tasks": tasks,
                  "text_generators": sorted(generators)}))
"""


@functools.cache
def _transformers() -> dict[str, Any]:
    """transformers' mappings, read in a child process: importing transformers here would import
    huggingface_hub before the worker sets its environment, for every later test."""
    done = subprocess.run(
        [sys.executable, "-c", _READ_TRANSFORMERS], capture_output=True, text=True, check=True
    )
    facts: dict[str, Any] = json.loads(done.stdout)
    return facts


def _task_classes() -> dict[str, set[str]]:
    return {task: set(names) for task, names in _transformers()["tasks"].items()}


def _text_generator_model_types() -> set[str]:
    return set(_transformers()["text_generators"])


def render() -> str:
    """The generated module: class → its endpoint-relevant tasks, and the text generators."""
    version = _transformers()["version"]
    relevant = {*EXPECTED, "MULTIMODAL_LM"}
    by_class: dict[str, list[str]] = {}
    for task, names in sorted(_task_classes().items()):
        for name in names:  # every class, so a known one never falls back to the suffix rules
            by_class.setdefault(name, []).extend([task] if task in relevant else [])
    lines = [
        f'"""Generated from transformers {version}; do not edit. Regenerate with',
        "``.venv/bin/python -m tests.unit.worker.inspect.test_architectures --write``.",
        "",
        "Every architecture class transformers knows → those of its tasks",
        '(``MODEL_FOR_<task>_MAPPING_NAMES``) that serve an endpoint type; see capabilities.py."""',
        "",
        "from __future__ import annotations",
        "",
        f'TRANSFORMERS_VERSION = "{version}"',
        "",
        "CLASS_TASKS: dict[str, tuple[str, ...]] = {",
        *(line for name, tasks in sorted(by_class.items()) for line in _entry(name, tasks)),
        "}",
        "",
        "TEXT_GENERATOR_MODEL_TYPES: frozenset[str] = frozenset(",
        "    {",
        *(f'        "{t}",' for t in sorted(_text_generator_model_types())),
        "    }",
        ")",
        '"""Model types of causal and seq2seq LMs: a ``text_config`` of one makes a vision model a',
        'text generator too."""',
        "",
    ]
    return "\n".join(lines)


def _entry(name: str, tasks: list[str]) -> list[str]:
    """One dict entry as ruff formats it, so the generated module stays format-clean."""
    quoted = [json.dumps(task) for task in tasks]
    value = f"({quoted[0]},)" if len(quoted) == 1 else f"({', '.join(quoted)})"
    line = f"    {json.dumps(name)}: {value},"
    if len(line) <= 100:
        return [line]
    return [f"    {json.dumps(name)}: (", *(f"        {q}," for q in quoted), "    ),"]


def expected(tasks: Iterable[str]) -> Row:
    tasks = set(tasks)
    rows = [EXPECTED[task] for task in sorted(tasks) if task in EXPECTED]
    if "MULTIMODAL_LM" in tasks and "IMAGE_TEXT_TO_TEXT" not in tasks:
        rows.append(MULTIMODAL_AUDIO)
    endpoints = {e for row in rows for e in row[0]}
    features = {f for row in rows for f in row[1]}
    return (
        tuple(e for e in get_args(EndpointType) if e in endpoints),
        tuple(f for f in get_args(Feature) if f in features),
    )


def test_the_generated_module_is_fresh() -> None:
    assert MODULE.read_text() == render(), (
        "worker/inspect/transformers_tasks.py is stale: run "
        ".venv/bin/python -m tests.unit.worker.inspect.test_architectures --write"
    )


def test_every_architecture_transformers_knows() -> None:
    tasks = _task_classes()
    classes = sorted(set().union(*tasks.values()))
    of_class: dict[str, set[str]] = {name: set() for name in classes}
    for task, names in tasks.items():
        for name in names:
            of_class[name].add(task)
    mismatches = {}
    for name in classes:
        found = capabilities(Signals(format="Safetensors", architecture=name))
        ours: Row = (found.endpoint_types, found.features)
        want = EXCEPTIONS[name][0] if name in EXCEPTIONS else expected(of_class[name])
        if ours != want:
            mismatches[name] = (sorted(of_class[name]), ours, want)
    assert mismatches == {}
    assert set(EXCEPTIONS) <= set(classes)
    counts = Counter(task for name in classes for task in of_class[name])
    print(f"{len(classes)} architectures; per task: {dict(sorted(counts.items()))}")
    with_endpoints = sum(1 for name in classes if expected(of_class[name])[0])
    print(f"{with_endpoints} with endpoint types; {len(EXCEPTIONS)} exceptions")


@pytest.mark.parametrize(
    ("name", "endpoints", "features"),
    [
        ("LlavaForConditionalGeneration", ("ImageToText",), ("VisionInput",)),
        ("BlipForConditionalGeneration", ("ImageToText",), ("VisionInput",)),
        ("Gemma3ForConditionalGeneration", ("TextGeneration", "ImageToText"), ("VisionInput",)),
        ("VoxtralForConditionalGeneration", ("TextGeneration", "SpeechToText"), ("AudioInput",)),
        ("Qwen2AudioForConditionalGeneration", ("TextGeneration",), ("AudioInput",)),
        ("MarianMTModel", ("TextGeneration",), ()),
        ("XLMRobertaForSequenceClassification", (), ()),
        ("BertModel", (), ()),
        # Unknown to transformers (newer, or custom code): the suffix rules.
        ("FutureNetForCausalLM", ("TextGeneration",), ()),
        ("FutureNetForConditionalGeneration", ("TextGeneration",), ()),
    ],
)
def test_examples(name: str, endpoints: tuple[str, ...], features: tuple[str, ...]) -> None:
    found = capabilities(Signals(format="Safetensors", architecture=name))
    assert (found.endpoint_types, found.features) == (endpoints, features)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    MODULE.write_text(render())
    print(f"wrote {MODULE}")
