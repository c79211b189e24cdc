"""Endpoint types that depend on config.json, not on the class name: through inspect_source."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest
from safetensors.numpy import save

from tests.unit.worker.inspect.memory_source import MemorySource
from worker.inspect.resolve import inspect_source

WEIGHTS = save({"w": np.zeros((4, 4), dtype=np.float16)})


def _resolve(config: Mapping[str, object], **files: bytes) -> tuple[object, object]:
    source = MemorySource({"model.safetensors": WEIGHTS, "config.json": json.dumps(config).encode(),
                           **files})  # fmt: skip
    resolved = inspect_source(source).resolved
    return resolved.supported_endpoint_types, resolved.supported_features


XLMR = {"architectures": ["XLMRobertaForSequenceClassification"], "model_type": "xlm-roberta"}


@pytest.mark.parametrize(
    ("labels", "endpoints"),
    [
        ({"num_labels": 1}, ["Rerank"]),  # e.g. BAAI/bge-reranker-base
        ({"id2label": {"0": "LABEL_0"}}, ["Rerank"]),  # cross-encoder/ms-marco-MiniLM-L-6-v2
        ({"num_labels": 1, "id2label": {"0": "a", "1": "b"}}, ["Rerank"]),  # num_labels wins
        ({"id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}, None),  # a sentiment classifier
        ({}, None),  # transformers' default: two labels
        ({"num_labels": 3}, None),
    ],
)
def test_a_one_label_sequence_classifier_is_a_reranker(
    labels: dict[str, object], endpoints: list[str] | None
) -> None:
    assert _resolve({**XLMR, **labels}) == (endpoints, None)


BLIP = {
    "architectures": ["BlipForConditionalGeneration"],
    "model_type": "blip",
    "text_config": {"model_type": "blip_text_model"},
    "vision_config": {"model_type": "blip_vision_model"},
}
LLAVA = {
    "architectures": ["LlavaForConditionalGeneration"],
    "model_type": "llava",
    "text_config": {"model_type": "llama", "max_position_embeddings": 4096},
    "vision_config": {"model_type": "clip_vision_model"},
}
CHAT = {"tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode()}


def test_an_image_captioner_is_image_to_text_only() -> None:
    assert _resolve(BLIP) == (["ImageToText"], ["VisionInput"])


def test_a_vision_language_model_with_a_causal_lm_also_generates_text() -> None:
    assert _resolve(LLAVA) == (["TextGeneration", "ImageToText"], ["VisionInput"])
    assert _resolve(LLAVA, **CHAT) == (["Chat", "TextGeneration", "ImageToText"], ["VisionInput"])
