"""The small JSON files of a Hugging Face repository, read with a size cap and typed.

``config.json`` (architecture, model type, context window, vision/audio towers, quantization),
``model_index.json`` (a Diffusers pipeline), ``tokenizer_config.json`` (chat templates, tool
support) and ``generation_config.json``. These files are written by many exporters with loose
typing, so a field of an unexpected type reads as absent; only an unreadable file (too large,
not JSON, not an object) is an error, and it names the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from worker.inspect.bounds import MAX_CONTEXT_LENGTH
from worker.inspect.reader import ByteSource, read_json_object

MAX_JSON_BYTES = 16 << 20
MAX_PIPELINE_COMPONENTS = 1000

CONTEXT_LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "max_sequence_length",
    "max_seq_length",
    "n_ctx",
)
"""Names exporters use for the context window, most common first."""

Json = dict[str, object]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: object) -> Json | None:
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Quantization:
    """``quantization_config``: the method as the exporter names it, and the weight bits."""

    method: str
    bits: int | None


@dataclass(frozen=True)
class ModelConfig:
    file: str
    architectures: tuple[str, ...]
    model_type: str | None
    text_model_type: str | None
    """``text_config.model_type`` of a multimodal model (e.g. ``llama`` inside ``llava``)."""
    context_length: int | None
    vision_model_type: str | None
    has_vision: bool
    audio_model_type: str | None
    has_audio: bool
    quantization: Quantization | None
    torch_dtype: str | None
    label_count: int | None = None
    """Labels of a classification head: ``num_labels``, else the entries of ``id2label``."""

    @property
    def architecture(self) -> str | None:
        return self.architectures[0] if self.architectures else None


def read_model_config(source: ByteSource) -> ModelConfig:
    """Read ``config.json``; fields of a nested ``text_config`` fill in what the top omits."""
    document = read_json_object(source, MAX_JSON_BYTES)
    text = _obj(document.get("text_config")) or {}
    vision = _obj(document.get("vision_config"))
    audio = _obj(document.get("audio_config"))
    architectures = document.get("architectures")
    if not isinstance(architectures, list):
        architectures = []
    quantization = _obj(document.get("quantization_config")) or _obj(
        text.get("quantization_config")
    )
    return ModelConfig(
        file=source.name,
        architectures=tuple(a for a in architectures if isinstance(a, str)),
        model_type=_str(document.get("model_type")),
        text_model_type=_str(text.get("model_type")),
        context_length=_context_length(document) or _context_length(text),
        vision_model_type=_str(vision.get("model_type")) if vision else None,
        # LLaVA-1.5-style exports name their tower instead of nesting a vision_config.
        has_vision=vision is not None or _str(document.get("mm_vision_tower")) is not None,
        audio_model_type=_str(audio.get("model_type")) if audio else None,
        has_audio=audio is not None,
        quantization=_quantization(quantization) if quantization else None,
        torch_dtype=_str(document.get("torch_dtype")) or _str(document.get("dtype")),
        label_count=_label_count(document),
    )


def _label_count(config: Json) -> int | None:
    count = _int(config.get("num_labels"))
    if count is not None:
        return count
    labels = _obj(config.get("id2label"))
    return len(labels) if labels else None


def _context_length(config: Json) -> int | None:
    for key in CONTEXT_LENGTH_KEYS:
        value = _int(config.get(key))
        if value is not None and 0 < value <= MAX_CONTEXT_LENGTH:
            return value
    return None


def _quantization(config: Json) -> Quantization | None:
    method = _str(config.get("quant_method"))
    if method is None:
        return None
    method = method.lower()
    return Quantization(method=method, bits=_quantization_bits(method, config))


_FIXED_BITS = {"fp8": 8, "fbgemm_fp8": 8, "eetq": 8, "mxfp4": 4, "bitnet": 2}
_QUANTO_BITS = {"int8": 8, "float8": 8, "int4": 4, "int2": 2}


def _quantization_bits(method: str, config: Json) -> int | None:
    if method in _FIXED_BITS:
        return _FIXED_BITS[method]
    if method == "bitsandbytes":
        if config.get("load_in_4bit") is True:
            return 4
        return 8 if config.get("load_in_8bit") is True else None
    if method == "compressed-tensors":
        return _compressed_tensors_bits(config)
    if method == "quanto":
        return _QUANTO_BITS.get(_str(config.get("weights")) or "")
    # gptq, awq, hqq, aqlm… name the width one of these ways.
    for key in ("bits", "w_bit", "nbits", "num_bits", "weight_bits"):
        bits = _int(config.get(key))
        if bits is not None and 0 < bits <= 64:
            return bits
    return None


def _compressed_tensors_bits(config: Json) -> int | None:
    """The weights' width when every config group agrees on it."""
    groups = _obj(config.get("config_groups")) or {}
    widths: set[int | None] = set()
    for group in groups.values():
        weights = _obj(group.get("weights")) if isinstance(group, dict) else None
        widths.add(_int(weights.get("num_bits")) if weights else None)
    return widths.pop() if len(widths) == 1 else None


@dataclass(frozen=True)
class DiffusersPipeline:
    """``model_index.json``: the pipeline class and its components (library, class)."""

    file: str
    class_name: str | None
    diffusers_version: str | None
    components: Mapping[str, tuple[str | None, str | None]]


def read_diffusers_index(source: ByteSource) -> DiffusersPipeline:
    document = read_json_object(source, MAX_JSON_BYTES)
    components: dict[str, tuple[str | None, str | None]] = {}
    for key, value in document.items():
        if key.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        components[key] = (_str(value[0]), _str(value[1]))
        if len(components) >= MAX_PIPELINE_COMPONENTS:
            break
    return DiffusersPipeline(
        file=source.name,
        class_name=_str(document.get("_class_name")),
        diffusers_version=_str(document.get("_diffusers_version")),
        components=MappingProxyType(components),
    )


@dataclass(frozen=True)
class TokenizerConfig:
    file: str
    chat_template: str | None
    """The default template (``default`` when templates are named, else the first one)."""
    named_templates: Mapping[str, str]
    """Every template by name; a single unnamed template is named ``default``."""
    supports_tools: bool
    tokenizer_class: str | None
    model_max_length: int | None


def read_tokenizer_config(source: ByteSource) -> TokenizerConfig:
    document = read_json_object(source, MAX_JSON_BYTES)
    templates = _chat_templates(document.get("chat_template"))
    default = templates.get("default") or next(iter(templates.values()), None)
    max_length = _int(document.get("model_max_length"))
    return TokenizerConfig(
        file=source.name,
        chat_template=default,
        named_templates=MappingProxyType(templates),
        supports_tools="tool_use" in templates
        or any(template_uses_tools(template) for template in templates.values()),
        tokenizer_class=_str(document.get("tokenizer_class")),
        # Tokenizers without a limit store 1e30 here; that is "unknown", not a context window.
        model_max_length=max_length
        if max_length is not None and 0 < max_length <= MAX_CONTEXT_LENGTH
        else None,
    )


def _chat_templates(raw: object) -> dict[str, str]:
    if isinstance(raw, str):
        return {"default": raw}
    templates: dict[str, str] = {}
    if isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict):
                name, template = _str(entry.get("name")), _str(entry.get("template"))
                if name is not None and template is not None:
                    templates.setdefault(name, template)
    return templates


# An opening quote always matches (to its closing quote, or to the end), so re.sub never retries
# a position: linear, unlike a pattern that must fail at every unterminated quote.
_STRING_LITERAL = re.compile(r"'[^'\\]*(?:\\.[^'\\]*)*'?|\"[^\"\\]*(?:\\.[^\"\\]*)*\"?", re.DOTALL)
_TOOLS_NAME = re.compile(r"\btools\b")


def template_uses_tools(template: str) -> bool:
    """Whether a Jinja chat template reads the ``tools`` variable.

    Only code inside ``{{ }}`` and ``{% %}`` counts, without its string literals, so a system
    prompt that merely mentions "tools" in its text is not taken for tool support. Linear in the
    template's length whatever it holds (``docs/inspection.md`` has the figures).
    """
    if "tools" not in template:
        return False
    for start, end in _jinja_tags(template):
        if template.find("tools", start, end) >= 0:
            code = _STRING_LITERAL.sub("''", template[start:end])
            if _TOOLS_NAME.search(code):
                return True
    return False


def _jinja_tags(template: str) -> Iterator[tuple[int, int]]:
    """Where the code of each tag lies, left to right, in one forward scan with ``str.find``.

    An opening without its closing mark is not a tag, and neither is any later opening of that
    kind (no closing mark follows them either), so that kind leaves the scan; the next opening
    of each kind is searched for only once the previous one is passed: each byte is searched at
    most once per kind. An unterminated quote in a tag runs to the tag's end.
    """
    find = template.find
    variable, statement = find("{{"), find("{%")  # the next opening of each kind, or -1
    while variable >= 0 or statement >= 0:
        is_variable = statement < 0 or 0 <= variable < statement
        start = variable if is_variable else statement
        end = find("}}" if is_variable else "%}", start + 2)
        if end < 0:
            if is_variable:
                variable = -1
            else:
                statement = -1
            continue
        yield start + 2, end
        if 0 <= variable < end + 2:
            variable = find("{{", end + 2)
        if 0 <= statement < end + 2:
            statement = find("{%", end + 2)


@dataclass(frozen=True)
class GenerationConfig:
    file: str
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    max_length: int | None
    max_new_tokens: int | None
    do_sample: bool | None
    temperature: float | None
    top_p: float | None
    top_k: int | None


def read_generation_config(source: ByteSource) -> GenerationConfig:
    document = read_json_object(source, MAX_JSON_BYTES)
    eos = document.get("eos_token_id")
    eos_list = eos if isinstance(eos, list) else [eos]
    do_sample = document.get("do_sample")
    return GenerationConfig(
        file=source.name,
        bos_token_id=_int(document.get("bos_token_id")),
        eos_token_ids=tuple(i for i in map(_int, eos_list) if i is not None),
        max_length=_int(document.get("max_length")),
        max_new_tokens=_int(document.get("max_new_tokens")),
        do_sample=do_sample if isinstance(do_sample, bool) else None,
        temperature=_float(document.get("temperature")),
        top_p=_float(document.get("top_p")),
        top_k=_int(document.get("top_k")),
    )


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
