"""The endpoint-type and feature table (worker.inspect.capabilities) and its copy in the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.inspect.capabilities import Signals, capabilities, render_table

DOC = Path(__file__).resolve().parents[4] / "docs" / "inspection.md"

TABLE: list[tuple[str, Signals, list[str], list[str]]] = [
    ("MiniLM: a sentence-similarity task and a sentence-transformers layout",
     Signals("Safetensors", task="sentence-similarity", architecture="BertModel",
             sentence_transformers=True), ["Embeddings"], []),
    ("BertModel alone says nothing", Signals("Safetensors", architecture="BertModel"), [], []),
    ("a causal LM with a chat template that reads tools",
     Signals("Safetensors", architecture="LlamaForCausalLM", chat_template=True,
             template_tools=True), ["Chat", "TextGeneration"], ["ToolCalling"]),
    ("a causal LM without a template is not a chat model",
     Signals("Safetensors", architecture="Qwen2ForCausalLM"), ["TextGeneration"], []),
    ("the Hub task wins over the class (an embedding model built on a causal LM)",
     Signals("Safetensors", task="feature-extraction", architecture="Qwen3ForCausalLM",
             chat_template=True), ["Embeddings"], []),
    ("a reranker", Signals("Safetensors", task="text-ranking",
                           architecture="XLMRobertaForSequenceClassification"), ["Rerank"], []),
    ("whisper by model type", Signals("Safetensors", architecture="WhisperForConditionalGeneration",
                                      model_type="whisper"), ["SpeechToText"], ["AudioInput"]),
    ("a vision-language model",
     Signals("Safetensors", architecture="LlavaForConditionalGeneration", chat_template=True,
             vision=True, text_model_type="llama"), ["Chat", "TextGeneration", "ImageToText"],
     ["VisionInput"]),
    ("audio and vision inputs together",
     Signals("Safetensors", architecture="Qwen2_5OmniForConditionalGeneration", vision=True,
             audio=True), ["TextGeneration", "TextToSpeech", "ImageToText"],
     ["VisionInput", "AudioInput", "AudioOutput", "MultiModalInput"]),
    ("an image classifier", Signals("Safetensors", architecture="ViTForImageClassification"),
     ["ImageClassification"], ["VisionInput"]),
    ("a Diffusers text-to-image pipeline",
     Signals("Diffusers", pipeline_class="StableDiffusionXLPipeline"), ["ImageGeneration"],
     ["ImageOutput"]),
    ("a Diffusers video pipeline",
     Signals("Diffusers", pipeline_class="CogVideoXPipeline"), ["VideoGeneration"],
     ["VideoOutput"]),
    ("an unknown Diffusers pipeline", Signals("Diffusers", pipeline_class="WanPipeline"), [], []),
    ("a GGUF chat model (SmolLM2)",
     Signals("GGUF", architecture="llama", chat_template=True), ["Chat", "TextGeneration"], []),
    ("a GGUF embedding model", Signals("GGUF", architecture="bert", gguf_pooling="mean"),
     ["Embeddings"], []),
    ("a GGUF reranker", Signals("GGUF", architecture="bert", gguf_pooling="rank"), ["Rerank"], []),
    ("an Ollama template with .Tools",
     Signals("GGUF", architecture="llama", chat_template=True, template_tools=True),
     ["Chat", "TextGeneration"], ["ToolCalling"]),
    ("Ollama's declared capabilities",
     Signals("GGUF", architecture="gemma3", chat_template=True,
             provider_capabilities=frozenset({"completion", "vision", "tools"})),
     ["Chat", "TextGeneration"], ["VisionInput", "ToolCalling"]),
    ("declared tools without a chat endpoint are dropped",
     Signals("GGUF", architecture="bert", gguf_pooling="cls",
             provider_capabilities=frozenset({"embedding", "tools"})), ["Embeddings"], []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "signals", "endpoints", "features"), TABLE, ids=[t[0] for t in TABLE]
)
def test_table(name: str, signals: Signals, endpoints: list[str], features: list[str]) -> None:
    found = capabilities(signals)
    assert (list(found.endpoint_types), list(found.features)) == (endpoints, features)


def test_the_docs_carry_the_same_table() -> None:
    assert render_table() in DOC.read_text()
