"""inspect_source over an in-memory Source: counts, quantization labels, templates, partial data."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import save

from tests.unit.worker.inspect.memory_source import MemorySource
from worker.errors import InvalidWeights
from worker.inspect.resolve import inspect_source
from worker.plan import PlannedFile, SourcePlan


def _config(**extra: object) -> bytes:
    return json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", **extra})\
        .encode()  # fmt: skip


def _tensors(**shapes: tuple[tuple[int, ...], str]) -> bytes:
    return save({name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in shapes.items()})


def test_awq_qweight_unpacks_along_the_output_dimension() -> None:
    weights = _tensors(**{
        "l.qweight": ((32, 48 // 8), "int32"), "l.qzeros": ((1, 48 // 8), "int32"),
        "l.scales": ((1, 48), "float16"), "emb.weight": ((10, 32), "float16"),
    })  # fmt: skip
    quantization = {"quant_method": "awq", "w_bit": 4, "q_group_size": 32}
    source = MemorySource({"model.safetensors": weights,
                           "config.json": _config(quantization_config=quantization)})  # fmt: skip
    resolved = inspect_source(source).resolved
    assert (resolved.parameter_count, resolved.quantization) == (32 * 48 + 10 * 32, "AWQ-4bit")


def test_compressed_tensors_pack_quantized() -> None:
    weights = _tensors(**{
        "l.weight_packed": ((48, 32 // 8), "int32"), "l.weight_scale": ((48, 1), "float16"),
        "l.weight_shape": ((2,), "int64"), "norm.weight": ((32,), "float16"),
    })  # fmt: skip
    quantization = {"quant_method": "compressed-tensors",
                    "config_groups": {"group_0": {"weights": {"num_bits": 4}}}}  # fmt: skip
    source = MemorySource({"model.safetensors": weights,
                           "config.json": _config(quantization_config=quantization)})  # fmt: skip
    resolved = inspect_source(source).resolved
    assert resolved.parameter_count == 48 * 32 + 32
    assert resolved.quantization == "COMPRESSED-TENSORS-4bit"


def test_mxfp4_blocks_hold_two_values_per_byte() -> None:
    weights = _tensors(**{
        "e.gate_up_proj_blocks": ((2, 8, 2, 16), "uint8"),
        "e.gate_up_proj_scales": ((2, 8, 2), "uint8"),
    })  # fmt: skip
    config = _config(quantization_config={"quant_method": "mxfp4"})
    source = MemorySource({"model.safetensors": weights, "config.json": config})
    resolved = inspect_source(source).resolved
    assert (resolved.parameter_count, resolved.quantization) == (2 * 8 * 2 * 16 * 2, "MXFP4")


def test_legacy_quantize_config_beside_config_json() -> None:
    weights = _tensors(**{"l.qweight": ((4, 48), "int32"), "l.scales": ((1, 48), "float16")})
    source = MemorySource({"model.safetensors": weights, "config.json": _config(),
                           "quantize_config.json": json.dumps({"bits": 4}).encode()})  # fmt: skip
    resolved = inspect_source(source).resolved
    assert (resolved.parameter_count, resolved.quantization) == (32 * 48, "GPTQ-4bit")


@pytest.mark.parametrize(
    ("config", "note"),
    [
        (_config(quantization_config={"quant_method": "hqq", "nbits": 4}),
         "parameter count unknown for quantization method 'hqq'"),
        (_config(), "packed .qweight tensors without a quantization config: count unknown"),
    ],
)  # fmt: skip
def test_counts_that_cannot_be_exact_stay_unknown(config: bytes, note: str) -> None:
    weights = _tensors(**{"l.qweight": ((4, 48), "int32")})
    inspection = inspect_source(MemorySource({"model.safetensors": weights, "config.json": config}))
    assert inspection.resolved.parameter_count is None
    assert note in inspection.notes
    assert inspection.partial is True


def test_an_index_naming_a_missing_shard_is_invalid() -> None:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors"}}  # fmt: skip
    source = MemorySource({"model-00001-of-00001.safetensors": _tensors(a=((2,), "float16")),
                           "model.safetensors.index.json": json.dumps(index).encode()})  # fmt: skip
    with pytest.raises(InvalidWeights, match="names shard"):
        inspect_source(source)


def test_chat_template_files_and_the_tokenizer_context() -> None:
    tools = "{% for t in tools %}{{ t.name }}{% endfor %}"
    source = MemorySource({
        "model.safetensors": _tensors(w=((4, 4), "float16")),
        "config.json": json.dumps({"architectures": ["MistralForCausalLM"]}).encode(),
        "tokenizer_config.json": json.dumps({"model_max_length": 32768}).encode(),
        "chat_template.json": json.dumps({"chat_template": tools}).encode(),
    }, tasks=("text-generation",), features=("mistral", "conversational"))  # fmt: skip
    inspection = inspect_source(source)
    assert inspection.resolved.to_wire() == {
        "architecture": "MistralForCausalLM",
        "format": "Safetensors",
        "parameterCount": 16,
        "contextWindowTokens": 32768,
        "supportedEndpointTypes": ["Chat", "TextGeneration"],
        "supportedFeatures": ["ToolCalling"],
        "sourceCapabilities": {
            "provider": "HuggingFace",
            "tasks": ["text-generation"],
            "features": ["mistral", "conversational"],
        },
    }


def test_a_local_source_has_no_provider_and_no_revision() -> None:
    source = MemorySource({"model.safetensors": _tensors(w=((3,), "float32"))}, source_type=None)
    inspection = inspect_source(source)
    assert inspection.resolved.to_wire() == {"format": "Safetensors", "parameterCount": 3}
    assert inspection.source_status.to_wire() == {}
    assert "no context length in config.json or tokenizer_config.json" in inspection.notes


def _gguf(path: Path, *, template: str | None = None, pooling: bool = False) -> bytes:
    writer = gguf.GGUFWriter(str(path), "bert" if pooling else "llama")
    writer.add_context_length(512)
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    if pooling:
        writer.add_pooling_type(gguf.PoolingType.CLS)
    if template:
        writer.add_chat_template(template)
    writer.add_tensor("w", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_ollama_template_tools_and_params(tmp_path: Path) -> None:
    files = {
        "model.gguf": _gguf(tmp_path / "m.gguf"),
        "template": b"{{ if .Tools }}{{ .Tools }}{{ end }}{{ .Prompt }}",
        "params.json": b'{"stop": ["<|end|>"]}',
    }
    plan_files = {"model.gguf": "weight", "template": "config", "params.json": "config"}
    source = MemorySource(files, source_type="Ollama", features=("completion",), fmt="GGUF")
    source._plan = SourcePlan(**{**source._plan.__dict__, "files": tuple(
        PlannedFile(p, len(files[p]), role) for p, role in plan_files.items())})  # type: ignore[arg-type]  # fmt: skip
    resolved = inspect_source(source).resolved
    assert resolved.to_wire() == {
        "architecture": "llama",
        "family": "llama",
        "format": "GGUF",
        "parameterCount": 32,
        "quantization": "Q8_0",
        "contextWindowTokens": 512,
        "supportedEndpointTypes": ["Chat", "TextGeneration"],
        "supportedFeatures": ["ToolCalling"],
        "sourceCapabilities": {"provider": "Ollama", "features": ["completion"]},
    }
    source.files["params.json"] = b"{not json"
    with pytest.raises(InvalidWeights, match=r"params\.json: not valid JSON"):
        inspect_source(source)


def test_split_gguf_counts_every_split_and_reads_metadata_from_the_first(tmp_path: Path) -> None:
    first = _gguf(tmp_path / "a.gguf", pooling=True)
    second = _gguf(tmp_path / "b.gguf")
    source = MemorySource({"e-00001-of-00002.gguf": first, "e-00002-of-00002.gguf": second})
    resolved = inspect_source(source).resolved
    assert (resolved.architecture, resolved.parameter_count) == ("bert", 64)
    assert resolved.supported_endpoint_types == ["Embeddings"]
