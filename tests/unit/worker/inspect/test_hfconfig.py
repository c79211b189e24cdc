"""Hugging Face JSON files: config, Diffusers index, tokenizer config, generation config."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ground.models import locate_real_models
from tests.unit.fuzzing import examples
from worker.errors import InvalidWeights
from worker.inspect import hfconfig as h
from worker.inspect.hfconfig import Quantization
from worker.inspect.reader import BytesSource, FileByteSource


def _source(name: str, document: object) -> BytesSource:
    return BytesSource(name, json.dumps(document).encode())


def _config(document: dict[str, Any]) -> h.ModelConfig:
    return h.read_model_config(_source("config.json", document))


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"max_position_embeddings": 4096}, 4096),
        ({"n_positions": 1024, "n_ctx": 2048}, 1024),
        ({"max_seq_len": 2048}, 2048),
        ({"seq_length": 32768}, 32768),
        ({"max_sequence_length": 512}, 512),
        ({"n_ctx": 2048}, 2048),
        ({"max_position_embeddings": True, "n_positions": 77}, 77),
        ({"max_position_embeddings": "4096"}, None),
        ({"max_position_embeddings": 0}, None),
        ({"max_position_embeddings": 2**40}, None),
        ({"text_config": {"max_position_embeddings": 131072}}, 131072),
        ({"max_position_embeddings": 8192, "text_config": {"max_position_embeddings": 4096}}, 8192),
        ({}, None),
    ],
)
def test_context_length_aliases(document: dict[str, Any], expected: int | None) -> None:
    assert _config(document).context_length == expected


def test_plain_decoder() -> None:
    config = _config(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16"}
    )
    assert (config.architecture, config.model_type, config.torch_dtype) == (
        "LlamaForCausalLM",
        "llama",
        "bfloat16",
    )
    assert (config.has_vision, config.has_audio, config.quantization, config.text_model_type) == (
        False,
        False,
        None,
        None,
    )


def test_multimodal_towers() -> None:
    config = _config(
        {
            "architectures": ["LlavaForConditionalGeneration", 3],
            "model_type": "llava",
            "text_config": {"model_type": "llama", "max_position_embeddings": 4096},
            "vision_config": {"model_type": "clip_vision_model"},
            "audio_config": {"model_type": "whisper"},
            "dtype": "float16",
        }
    )
    assert config.architectures == ("LlavaForConditionalGeneration",)
    assert (config.model_type, config.text_model_type, config.context_length) == (
        "llava",
        "llama",
        4096,
    )
    assert (config.has_vision, config.vision_model_type) == (True, "clip_vision_model")
    assert (config.has_audio, config.audio_model_type, config.torch_dtype) == (
        True,
        "whisper",
        "float16",
    )


def test_llava_style_vision_tower_name() -> None:
    config = _config({"mm_vision_tower": "openai/clip-vit-large-patch14-336"})
    assert (config.has_vision, config.vision_model_type) == (True, None)


@pytest.mark.parametrize(
    ("quantization", "expected"),
    [
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, Quantization("gptq", 4)),
        ({"quant_method": "awq", "bits": 4}, Quantization("awq", 4)),
        ({"quant_method": "AWQ", "w_bit": 4}, Quantization("awq", 4)),
        (
            {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False},
            Quantization("bitsandbytes", 4),
        ),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, Quantization("bitsandbytes", 8)),
        ({"quant_method": "bitsandbytes"}, Quantization("bitsandbytes", None)),
        ({"quant_method": "fp8", "activation_scheme": "dynamic"}, Quantization("fp8", 8)),
        ({"quant_method": "mxfp4"}, Quantization("mxfp4", 4)),
        ({"quant_method": "hqq", "nbits": 2}, Quantization("hqq", 2)),
        ({"quant_method": "quanto", "weights": "int4"}, Quantization("quanto", 4)),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {
                    "g0": {"weights": {"num_bits": 8}},
                    "g1": {"weights": {"num_bits": 8}},
                },
            },
            Quantization("compressed-tensors", 8),
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {
                    "g0": {"weights": {"num_bits": 4}},
                    "g1": {"weights": {"num_bits": 8}},
                },
            },
            Quantization("compressed-tensors", None),
        ),
        ({"quant_method": "gptq", "bits": "4"}, Quantization("gptq", None)),
        ({"bits": 4}, None),
    ],
)
def test_quantization_methods(quantization: dict[str, Any], expected: Quantization | None) -> None:
    assert _config({"quantization_config": quantization}).quantization == expected


def test_quantization_inside_text_config() -> None:
    config = _config({"text_config": {"quantization_config": {"quant_method": "gptq", "bits": 3}}})
    assert config.quantization == Quantization("gptq", 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "expected a JSON object at the top level, got list"),
        (b'{"a":', "not valid JSON"),
        (b"\xfe\xff", "not valid UTF-8"),
        (b"{}" + b" " * (16 << 20), "over the 16777216-byte limit"),
    ],
)
def test_unreadable_config_names_the_file(data: bytes, message: str) -> None:
    with pytest.raises(InvalidWeights) as caught:
        h.read_model_config(BytesSource("org/repo/config.json", data))
    assert str(caught.value).startswith("org/repo/config.json: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "reader", [h.read_diffusers_index, h.read_tokenizer_config, h.read_generation_config]
)
def test_every_reader_is_capped(reader: Any) -> None:
    with pytest.raises(InvalidWeights, match=r"^x\.json: file is 16777218 bytes"):
        reader(BytesSource("x.json", b"{}" + b" " * (16 << 20)))


def test_diffusers_pipeline() -> None:
    pipeline = h.read_diffusers_index(
        _source(
            "model_index.json",
            {
                "_class_name": "StableDiffusionXLPipeline",
                "_diffusers_version": "0.19.0.dev0",
                "force_zeros_for_empty_prompt": True,
                "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "feature_extractor": [None, None],
            },
        )
    )
    assert (pipeline.class_name, pipeline.diffusers_version) == (
        "StableDiffusionXLPipeline",
        "0.19.0.dev0",
    )
    assert dict(pipeline.components) == {
        "scheduler": ("diffusers", "EulerDiscreteScheduler"),
        "text_encoder": ("transformers", "CLIPTextModel"),
        "unet": ("diffusers", "UNet2DConditionModel"),
        "feature_extractor": (None, None),
    }


QWEN_LIKE = (
    "{%- if tools %}{{- '<|im_start|>system\\n# Tools\\n' }}{%- for tool in tools %}"
    "{{- tool | tojson }}{%- endfor %}{%- endif %}{%- for message in messages %}"
    "{{- message.content }}{%- endfor %}"
)


@pytest.mark.parametrize(
    ("template", "uses_tools"),
    [
        (QWEN_LIKE, True),
        ("{% if tools is defined and tools %}{{ tools|length }}{% endif %}", True),
        ("{{ messages[0]['content'] }}{% set t = tools %}", True),
        ("{{ 'You can use tools to answer.' }}{{ messages | length }}", False),
        ('{{ "tools" }}{% if x == "use tools" %}{% endif %}', False),
        ("Plain text mentioning tools outside any tag {{ messages }}", False),
        ("{{ toolset }}{{ my_tools }}", False),
        ("", False),
    ],
)
def test_template_uses_tools(template: str, uses_tools: bool) -> None:
    assert h.template_uses_tools(template) is uses_tools


@pytest.mark.parametrize(
    ("template", "uses_tools"),
    [
        ("{{ a }} {{ b {% if tools %}{% endif %}", True),  # "{{" unclosed: "{%" tags still count
        ("{% a %} {% b {{ tools }}", True),
        ("{{%tools}}", True),  # the "{{" tag's code is "%tools"
        ("{{ 'a' ~ tools }}", True),
        ("{{ 'it\\'s' ~ tools }}", True),  # an escaped quote inside a literal
        ('{{ "a \\" tools" }}', False),
        ("{{ 'unterminated tools }}", False),  # Jinja rejects it; the literal runs to the end
        ("{{ x }}}} tools {{ y }}", False),
        ("{% raw %}{{ tools }}{% endraw %}", True),  # raw blocks are not parsed, as before
    ],
)
def test_template_scan_edges(template: str, uses_tools: bool) -> None:
    assert h.template_uses_tools(template) is uses_tools


@pytest.mark.parametrize("size", [1 << 20, 16 << 20])
@pytest.mark.parametrize(
    ("unit", "tail", "uses_tools"),
    [
        ("{{", "{% if tools %}{% endif %}", True),  # quadratic for the old regex (80 KB: 29 s)
        ("{{", "tools", False),
        ("{%", "{{ tools }}", True),
        ("{{a}}", "{{ tools }}", True),  # the most tags a template can hold
        ("{{ '\\'", "}} {{ tools }}", True),  # one tag, an unterminated literal
        ("'\\", "{{ 'x' }} tools", False),
    ],
)
def test_hostile_templates_up_to_the_caps(
    size: int, unit: str, tail: str, uses_tools: bool
) -> None:
    template = unit * ((size - len(tail)) // len(unit)) + tail
    assert h.template_uses_tools(template) is uses_tools


_OLD_TAG = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_OLD_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)


def _old_template_uses_tools(template: str) -> bool:
    """The regex scan this replaced (quadratic on unclosed tags): the oracle for small inputs."""
    for match in _OLD_TAG.finditer(template):
        code = _OLD_LITERAL.sub("''", match.group(1) or match.group(2) or "")
        if re.search(r"\btools\b", code):
            return True
    return False


@settings(max_examples=examples(3000), derandomize=True, database=None, deadline=None)
@given(
    pieces=st.lists(
        st.sampled_from(["{{", "}}", "{%", "%}", "{", "}", "%", " ", "tools", "x", "tools_", ".",
                         "'a'", '"b"', "'\\''"]),
        max_size=16,
    )
)  # fmt: skip
def test_the_scan_agrees_with_the_old_regex(pieces: list[str]) -> None:
    """Everywhere but unterminated string literals (a template Jinja rejects)."""
    template = "".join(pieces)
    assert h.template_uses_tools(template) is _old_template_uses_tools(template)


@pytest.mark.parametrize(
    ("chat_template", "default", "names", "tools"),
    [
        (QWEN_LIKE, QWEN_LIKE, ["default"], True),
        ("{{ messages }}", "{{ messages }}", ["default"], False),
        (
            [
                {"name": "default", "template": "{{ messages }}"},
                {"name": "tool_use", "template": "{{ messages }}"},
            ],
            "{{ messages }}",
            ["default", "tool_use"],
            True,
        ),
        (
            [
                {"name": "rag", "template": "{{ documents }}"},
                {"name": "chat", "template": QWEN_LIKE},
                {"bad": 1},
            ],
            "{{ documents }}",
            ["rag", "chat"],
            True,
        ),
        (None, None, [], False),
        (42, None, [], False),
    ],
)
def test_tokenizer_chat_templates(
    chat_template: object, default: str | None, names: list[str], tools: bool
) -> None:
    config = h.read_tokenizer_config(
        _source("tokenizer_config.json", {"chat_template": chat_template})
    )
    assert (config.chat_template, list(config.named_templates), config.supports_tools) == (
        default,
        names,
        tools,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(8192, 8192), (int(1e30), None), (1e30, None), (None, None), (0, None), (-5, None)],
)
def test_tokenizer_model_max_length(value: object, expected: int | None) -> None:
    document = {"model_max_length": value, "tokenizer_class": "GPT2Tokenizer"}
    config = h.read_tokenizer_config(_source("tokenizer_config.json", document))
    assert (config.model_max_length, config.tokenizer_class) == (expected, "GPT2Tokenizer")


def test_generation_config() -> None:
    document = {
        "bos_token_id": 1,
        "eos_token_id": [2, 32000, "x"],
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 1,
        "top_k": 50,
        "max_length": 4096,
    }
    config = h.read_generation_config(_source("generation_config.json", document))
    assert config == h.GenerationConfig(
        file="generation_config.json",
        bos_token_id=1,
        eos_token_ids=(2, 32000),
        max_length=4096,
        max_new_tokens=None,
        do_sample=True,
        temperature=0.6,
        top_p=1.0,
        top_k=50,
    )
    assert h.read_generation_config(_source("g.json", {"eos_token_id": 7})).eos_token_ids == (7,)
    assert h.read_generation_config(_source("g.json", {})).eos_token_ids == ()


def test_real_minilm_configs() -> None:
    directory = locate_real_models().minilm_dir
    reference = json.loads((directory / "config.json").read_text())
    config = h.read_model_config(FileByteSource(directory / "config.json"))
    assert config.architecture == reference["architectures"][0] == "BertModel"
    assert config.model_type == reference["model_type"] == "bert"
    assert config.context_length == reference["max_position_embeddings"] == 512
    assert (config.quantization, config.has_vision, config.file) == (None, False, "config.json")

    tokenizer_reference = json.loads((directory / "tokenizer_config.json").read_text())
    tokenizer = h.read_tokenizer_config(FileByteSource(directory / "tokenizer_config.json"))
    assert (tokenizer.chat_template, tokenizer.supports_tools) == (None, False)
    assert tokenizer.tokenizer_class == tokenizer_reference["tokenizer_class"] == "BertTokenizer"
    assert tokenizer.model_max_length == tokenizer_reference["model_max_length"] == 512
