"""From a ``Source`` to ``status.resolved``: headers and small files only, never the weights.

``inspect_source`` plans the source, then reads through ``Source.byte_source``: the safetensors
header of every shard (or the GGUF header of the model file, all splits), ``config.json``,
``model_index.json``, ``tokenizer_config.json``, ``generation_config.json``, chat templates,
Ollama's ``template`` and ``params.json``. It computes the architecture, family, exact parameter
count (packed quantized tensors unpacked, their scales and zero points left out), quantization
label and context window, and maps what it found through the ``capabilities`` table. A field the
files do not state stays None, and ``Inspection.notes`` says why; so does a value out of the
bounds of ``bounds.py``, checked before the table and the publication. Headers are reduced as
they are read (``counting.TensorTally``) and share one budget per model, so the cost of a
hostile model does not grow with its number of shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api.model import ResolvedMetadata, SourceCapabilities, SourceStatus
from worker.errors import InvalidWeights, NoSupportedWeights
from worker.inspect.bounds import (
    MAX_CONTEXT_LENGTH,
    MAX_PARAMETER_COUNT,
    bounded_capability_names,
    bounded_count,
    bounded_name,
)
from worker.inspect.capabilities import Signals, capabilities
from worker.inspect.counting import TensorTally, parameter_count
from worker.inspect.gguf import Budgets as GGUFBudgets
from worker.inspect.gguf import GGUFHeader, read_gguf_header
from worker.inspect.hfconfig import (
    ModelConfig,
    Quantization,
    read_diffusers_index,
    read_generation_config,
    read_model_config,
    read_tokenizer_config,
    template_uses_tools,
)
from worker.inspect.reader import read_json_object, read_whole
from worker.inspect.safetensors import (
    read_safetensors_header,
    read_safetensors_index,
    tensor_budget,
)
from worker.plan import Source, SourcePlan

MAX_TEMPLATE_BYTES = 1 << 20
MAX_PARAMS_BYTES = 1 << 20
OLLAMA_TOOLS_MARK = ".Tools"
"""Ollama's own test for tool support: the Go template reads ``.Tools``."""


FIXED_LABELS = {"fp8": "FP8", "fbgemm_fp8": "FP8", "mxfp4": "MXFP4", "bitnet": "BITNET"}


@dataclass(frozen=True)
class Inspection:
    plan: SourcePlan
    resolved: ResolvedMetadata
    source_status: SourceStatus
    notes: tuple[str, ...] = ()
    """Why a field stayed unknown (the controller reports MetadataPartial when any is)."""

    @property
    def partial(self) -> bool:
        r = self.resolved
        return None in (r.architecture, r.parameter_count, r.context_window_tokens)


@dataclass
class _Facts:
    architecture: str | None = None
    family: str | None = None
    parameter_count: int | None = None
    quantization: str | None = None
    context: int | None = None
    model_type: str | None = None
    pipeline_class: str | None = None
    pooling: str | None = None
    chat_template: bool = False
    template_tools: bool = False
    vision: bool = False
    audio: bool = False
    label_count: int | None = None
    text_model_type: str | None = None
    notes: list[str] = field(default_factory=list)


def inspect_source(source: Source) -> Inspection:
    """Plan ``source`` and resolve its metadata from headers and small files."""
    plan = source.plan()
    facts = _gguf_facts(source, plan) if plan.format == "GGUF" else _safetensors_facts(source, plan)
    _bound(facts)
    found = capabilities(
        Signals(
            format=plan.format,
            task=plan.provider_tasks[0] if plan.provider_tasks else None,
            architecture=facts.architecture,
            model_type=facts.model_type,
            pipeline_class=facts.pipeline_class,
            gguf_pooling=facts.pooling,
            sentence_transformers=plan.file("modules.json") is not None,
            chat_template=facts.chat_template,
            template_tools=facts.template_tools,
            vision=facts.vision,
            audio=facts.audio,
            label_count=facts.label_count,
            text_model_type=facts.text_model_type,
            provider_capabilities=frozenset(plan.provider_features)
            if plan.source_type == "Ollama"
            else frozenset(),
        )
    )
    resolved = ResolvedMetadata(
        architecture=facts.architecture,
        family=facts.family,
        format=plan.format,
        parameter_count=facts.parameter_count or None,
        quantization=facts.quantization,
        context_window_tokens=facts.context,
        source_capabilities=_source_capabilities(plan, facts.notes),
        supported_endpoint_types=list(found.endpoint_types) or None,
        supported_features=list(found.features) or None,
    )
    status = SourceStatus(resolved_revision=plan.revision, resolved_type=plan.source_type)
    return Inspection(plan=plan, resolved=resolved, source_status=status, notes=tuple(facts.notes))


def _bound(facts: _Facts) -> None:
    """Out-of-range values from the files become unknown before anything uses them."""
    notes = facts.notes
    same = facts.model_type == facts.family  # config.json model_type is both: one note
    facts.architecture = bounded_name(facts.architecture, "architecture", notes)
    facts.family = bounded_name(facts.family, "family", notes)
    facts.model_type = facts.family if same else bounded_name(facts.model_type, "model type", notes)
    facts.pipeline_class = bounded_name(facts.pipeline_class, "pipeline class", notes)
    facts.quantization = bounded_name(facts.quantization, "quantization", notes)
    facts.context = bounded_count(facts.context, "context length", MAX_CONTEXT_LENGTH, notes)
    facts.parameter_count = bounded_count(
        facts.parameter_count or None, "parameter count", MAX_PARAMETER_COUNT, notes
    )


def _source_capabilities(plan: SourcePlan, notes: list[str]) -> SourceCapabilities | None:
    if plan.source_type is None:
        return None
    tasks = bounded_capability_names(plan.provider_tasks, "provider task(s)", notes)
    features = bounded_capability_names(plan.provider_features, "provider feature(s)", notes)
    return SourceCapabilities(
        provider=plan.source_type, tasks=tasks or None, features=features or None
    )


def _read_text(source: Source, path: str, limit: int) -> str:
    raw = read_whole(source.byte_source(path), limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidWeights(f"{path}: not valid UTF-8 at byte {exc.start}") from exc


# ---- GGUF (Hugging Face GGUF repositories, Ollama, local files) --------------------------------


def _gguf_facts(source: Source, plan: SourcePlan) -> _Facts:
    ggufs = [f.path for f in plan.files if f.role == "weight" and f.path.lower().endswith(".gguf")]
    projectors = [p for p in ggufs if "mmproj" in p.rsplit("/", 1)[-1].lower()]
    adapters = [p for p in ggufs if plan.source_type == "Ollama" and p.startswith("adapter")]
    models = sorted(p for p in ggufs if p not in projectors and p not in adapters)
    if not models:
        raise NoSupportedWeights(f"{plan.name}: no model GGUF, only {', '.join(ggufs)}")
    # Split files (-00001-of-0000N) sort in order; the first carries the metadata. Of the others
    # only the count is kept, and the budgets are shared: see gguf.py.
    budgets = GGUFBudgets()
    first = read_gguf_header(source.byte_source(models[0]), budgets=budgets)
    count = first.parameter_count
    for path in models[1:]:
        count += read_gguf_header(source.byte_source(path), budgets=budgets).parameter_count
    facts = _Facts(
        architecture=first.architecture,
        family=first.architecture,  # llama.cpp's architecture is the family (Ollama's too)
        parameter_count=count,
        quantization=first.file_type_label,
        context=first.context_length,
        pooling=first.pooling_type,
        chat_template=first.chat_template is not None,
        template_tools=first.chat_template is not None and template_uses_tools(first.chat_template),
        vision=bool(projectors),
    )
    _ollama_files(source, plan, facts)
    _note_unknown_gguf(first, facts)
    return facts


def _ollama_files(source: Source, plan: SourcePlan, facts: _Facts) -> None:
    if plan.file("template") is not None:
        template = _read_text(source, "template", MAX_TEMPLATE_BYTES)
        facts.chat_template = facts.chat_template or bool(template.strip())
        facts.template_tools = facts.template_tools or OLLAMA_TOOLS_MARK in template
    if plan.file("params.json") is not None:
        read_json_object(source.byte_source("params.json"), MAX_PARAMS_BYTES)  # validated only


def _note_unknown_gguf(header: GGUFHeader, facts: _Facts) -> None:
    if facts.quantization is None:
        facts.notes.append(f"{header.file}: general.file_type is absent or not a known type")
    if facts.context is None:
        facts.notes.append(f"{header.file}: no <architecture>.context_length key")


# ---- safetensors and Diffusers -----------------------------------------------------------------


def _safetensors_facts(source: Source, plan: SourcePlan) -> _Facts:
    weights = sorted(f.path for f in plan.files if f.path.endswith(".safetensors"))
    tally, budget = TensorTally(), tensor_budget()  # shared by every shard: see safetensors.py
    for path in weights:
        tally.add(read_safetensors_header(source.byte_source(path), budget))
    _check_indexes(source, plan)
    facts = _Facts()
    config = _model_config(source, plan, facts)
    if plan.format == "Diffusers":
        pipeline = read_diffusers_index(source.byte_source("model_index.json"))
        facts.architecture = facts.pipeline_class = pipeline.class_name
        facts.family = facts.model_type = None
    quantization = _quantization(source, plan, config)
    facts.quantization = _quantization_label(quantization) if quantization else None
    facts.parameter_count = parameter_count(tally, quantization, facts.notes)
    _tokenizer_facts(source, plan, facts)
    if plan.file("generation_config.json") is not None:
        read_generation_config(source.byte_source("generation_config.json"))  # validated only
    if facts.context is None and plan.format == "Safetensors":
        facts.notes.append("no context length in config.json or tokenizer_config.json")
    return facts


def _check_indexes(source: Source, plan: SourcePlan) -> None:
    """Every shard an index names must be in the plan, or the checkpoint cannot load."""
    planned = {f.path for f in plan.files}
    for f in plan.files:
        if ".safetensors.index" not in f.path or not f.path.endswith(".json"):
            continue
        index = read_safetensors_index(source.byte_source(f.path))
        folder = f.path.rsplit("/", 1)[0] + "/" if "/" in f.path else ""
        missing = [shard for shard in index.shards if folder + shard not in planned]
        if missing:
            raise InvalidWeights(
                f"{f.path}: names shard(s) the source does not have: {', '.join(missing[:5])}"
            )


def _model_config(source: Source, plan: SourcePlan, facts: _Facts) -> ModelConfig | None:
    if plan.file("config.json") is None:
        return None
    config = read_model_config(source.byte_source("config.json"))
    facts.architecture = config.architecture
    facts.family = config.model_type
    facts.model_type = config.model_type
    facts.context = config.context_length
    facts.vision = config.has_vision
    facts.audio = config.has_audio
    facts.label_count = config.label_count
    facts.text_model_type = config.text_model_type
    return config


def _quantization(
    source: Source, plan: SourcePlan, config: ModelConfig | None
) -> Quantization | None:
    if config is not None and config.quantization is not None:
        return config.quantization
    # AutoGPTQ's older exports keep the settings beside config.json instead of inside it.
    if plan.file("quantize_config.json") is not None:
        legacy = read_json_object(source.byte_source("quantize_config.json"), MAX_PARAMS_BYTES)
        bits = legacy.get("bits")
        if isinstance(bits, int) and not isinstance(bits, bool) and 0 < bits <= 64:
            method = legacy.get("quant_method")
            return Quantization(method=method if isinstance(method, str) else "gptq", bits=bits)
    return None


def _quantization_label(quantization: Quantization) -> str:
    if quantization.method in FIXED_LABELS:
        return FIXED_LABELS[quantization.method]
    label = quantization.method.upper()
    return f"{label}-{quantization.bits}bit" if quantization.bits else label


def _tokenizer_facts(source: Source, plan: SourcePlan, facts: _Facts) -> None:
    templates: list[str] = []
    if plan.file("tokenizer_config.json") is not None:
        tokenizer = read_tokenizer_config(source.byte_source("tokenizer_config.json"))
        templates.extend(tokenizer.named_templates.values())
        facts.context = facts.context or tokenizer.model_max_length
    if plan.file("chat_template.jinja") is not None:
        templates.append(_read_text(source, "chat_template.jinja", MAX_TEMPLATE_BYTES))
    if plan.file("chat_template.json") is not None:
        document = read_json_object(source.byte_source("chat_template.json"), MAX_TEMPLATE_BYTES)
        template = document.get("chat_template")
        templates.extend([template] if isinstance(template, str) else [])
    facts.chat_template = any(t.strip() for t in templates)
    facts.template_tools = any(template_uses_tools(t) for t in templates)
