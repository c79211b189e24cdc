"""Values out of range in a model's files become unknown fields, never a crash or an oversized
result: GGUF and config integers outside the API's range, hostile names, endless Hub tags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from api.protocol import MAX_REPORT_BYTES, parse_result
from tests.unit.worker.inspect.builders import (
    INT32,
    INT64,
    STRING,
    UINT32,
    UINT64,
    gguf_file,
    gguf_kv,
    gguf_string,
    gguf_tensor,
    gguf_value,
)
from tests.unit.worker.inspect.memory_source import MemorySource
from worker import commands
from worker.inspect.bounds import MAX_CAPABILITY_BYTES, MAX_CAPABILITY_NAMES
from worker.inspect.resolve import inspect_source

WEIGHTS = save({"w": np.zeros((4, 4), dtype=np.float16)})
LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}


def _gguf(*kvs: bytes, tensors: tuple[bytes, ...] = ()) -> bytes:
    return gguf_file([gguf_kv("general.architecture", STRING, gguf_string("llama")), *kvs],
                     tensors)  # fmt: skip


@pytest.mark.parametrize(
    ("value_type", "value"),
    [(UINT32, 0), (INT32, -1), (INT64, -(1 << 63)), (UINT64, (1 << 64) - 1), (UINT64, 1 << 31 | 1)],
)
def test_a_gguf_context_length_out_of_range_is_unknown(value_type: int, value: int) -> None:
    kv = gguf_kv("llama.context_length", value_type, gguf_value(value_type, value))
    inspection = inspect_source(MemorySource({"model.gguf": _gguf(kv)}))
    assert inspection.resolved.context_window_tokens is None
    assert f"context length {value} is outside [1, 2147483648]: treated as unknown" in (
        inspection.notes
    )
    assert inspection.partial is True


@pytest.mark.parametrize("length", [0, -5, -(1 << 70)])
def test_a_tokenizer_model_max_length_out_of_range_is_unknown(length: int) -> None:
    tokenizer = json.dumps({"model_max_length": length}).encode()
    files = {"model.safetensors": WEIGHTS, "config.json": json.dumps(LLAMA).encode(),
             "tokenizer_config.json": tokenizer}  # fmt: skip
    resolved = inspect_source(MemorySource(files)).resolved
    assert (resolved.context_window_tokens, resolved.parameter_count) == (None, 16)


@pytest.mark.parametrize("key", ["max_position_embeddings", "n_positions"])
@pytest.mark.parametrize("length", [0, -1, 1 << 31 | 1])
def test_a_config_context_length_out_of_range_is_unknown(key: str, length: int) -> None:
    files = {"model.safetensors": WEIGHTS,
             "config.json": json.dumps({**LLAMA, key: length}).encode()}  # fmt: skip
    assert inspect_source(MemorySource(files)).resolved.context_window_tokens is None


def test_a_parameter_count_beyond_int64_is_unknown() -> None:
    # ggml type 200 is unknown, so its size is not checked: 2**62 elements each, 2**63 in all.
    tensors = (gguf_tensor("a", [1 << 62], 200, 0), gguf_tensor("b", [1 << 62], 200, 0))
    inspection = inspect_source(MemorySource({"model.gguf": _gguf(tensors=tensors)}))
    assert inspection.resolved.parameter_count is None
    assert "parameter count 9223372036854775808 is outside [1, 9223372036854775807]: treated " \
        "as unknown" in inspection.notes  # fmt: skip


HOSTILE_CONFIG = {
    "architectures": ["A" * 100_000 + "ForCausalLM"],
    "model_type": "B" * 100_000,
    "quantization_config": {"quant_method": "q" * 100_000, "bits": 4},
    "max_position_embeddings": 4096,
}


def test_the_result_of_a_hostile_config_fits_the_controllers_limit(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(WEIGHTS)
    (tmp_path / "config.json").write_text(json.dumps(HOSTILE_CONFIG))
    found = commands.inspect(str(tmp_path))
    assert found["resolved"] == {"contextWindowTokens": 4096, "format": "Safetensors"}
    result = {
        "artifact": {"kind": "OCI", "digest": "sha256:" + "0" * 64, "sizeBytes": 1},
        "resolved": found["resolved"],
        "source": found["source"],
    }
    text = json.dumps(result, sort_keys=True)
    assert len(text) <= MAX_REPORT_BYTES
    assert parse_result(text).resolved.architecture is None


def test_hostile_names_are_dropped_with_a_note() -> None:
    source = MemorySource({"model.safetensors": WEIGHTS,
                           "config.json": json.dumps(HOSTILE_CONFIG).encode()})  # fmt: skip
    inspection = inspect_source(source)
    r = inspection.resolved
    assert (r.architecture, r.family, r.quantization) == (None, None, None)
    assert r.supported_endpoint_types is None  # the class suffix of a dropped name is not used
    assert [n.split(" (")[0][:16] for n in inspection.notes if "treated as unknown" in n] == [
        'architecture "AA',
        'family "BBBBBBBB',
        'quantization "QQ',
    ]
    assert 'architecture "' + "A" * 40 + '"… (100011 characters) is not a name of at most ' \
        "128 characters of [A-Za-z0-9._+-]: treated as unknown" in inspection.notes  # fmt: skip


@pytest.mark.parametrize("name", ["", "a b", "ll/ama", "é", "x" * 129, "-llama", "llama\n"])
def test_a_gguf_architecture_that_is_not_a_name_is_unknown(name: str) -> None:
    data = gguf_file([gguf_kv("general.architecture", STRING, gguf_string(name))])
    resolved = inspect_source(MemorySource({"model.gguf": data})).resolved
    assert (resolved.architecture, resolved.family) == (None, None)


def test_names_at_the_bound_are_kept() -> None:
    name = "a" * 127 + "9"
    data = gguf_file([gguf_kv("general.architecture", STRING, gguf_string(name))])
    resolved = inspect_source(MemorySource({"model.gguf": data})).resolved
    assert (resolved.architecture, resolved.family) == (name, name)


def test_hub_tags_are_bounded_in_length_count_and_bytes() -> None:
    tags = ("", "x" * 129, *(f"tag-{i:04d}" for i in range(1000)))
    source = MemorySource({"model.gguf": _gguf()}, tasks=("t" * 200,), features=tags)
    inspection = inspect_source(source)
    capabilities = inspection.resolved.source_capabilities
    assert capabilities is not None
    assert capabilities.tasks is None
    assert capabilities.features == [f"tag-{i:04d}" for i in range(MAX_CAPABILITY_NAMES)]
    assert "1 provider task(s) dropped: empty, longer than 128 characters, or past 256 names / " \
        "16384 bytes" in inspection.notes  # fmt: skip
    assert "746 provider feature(s) dropped: empty, longer than 128 characters, or past 256 " \
        "names / 16384 bytes" in inspection.notes  # fmt: skip


def test_hub_tags_are_bounded_in_encoded_bytes() -> None:
    tag = "\U0001f600" * 128  # 128 characters, 1538 bytes of ASCII-escaped JSON
    source = MemorySource({"model.gguf": _gguf()}, features=(tag,) * 20)
    capabilities = inspect_source(source).resolved.source_capabilities
    assert capabilities is not None
    assert capabilities.features is not None
    assert len(capabilities.features) == MAX_CAPABILITY_BYTES // (len(json.dumps(tag)) + 1) == 10


def test_a_16_mib_gguf_chat_template_of_unclosed_tags_is_read() -> None:
    template = "{{" * ((8 << 20) - 16) + "{% if tools %}{% endif %}"
    kv = gguf_kv("tokenizer.chat_template", STRING, gguf_string(template))
    resolved = inspect_source(MemorySource({"model.gguf": _gguf(kv)})).resolved
    assert resolved.supported_endpoint_types == ["Chat", "TextGeneration"]
    assert resolved.supported_features == ["ToolCalling"]


def test_a_1_mib_chat_template_file_of_unclosed_tags_is_read() -> None:
    template = "{{" * ((1 << 20) // 2 - 16) + "{% if tools %}{% endif %}"
    files = {"model.safetensors": WEIGHTS, "config.json": json.dumps(LLAMA).encode(),
             "chat_template.jinja": template.encode()}  # fmt: skip
    resolved = inspect_source(MemorySource(files)).resolved
    assert resolved.supported_endpoint_types == ["Chat", "TextGeneration"]
    assert resolved.supported_features == ["ToolCalling"]
