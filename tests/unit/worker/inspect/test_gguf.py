"""GGUF headers: files from gguf.GGUFWriter, hand-built hostile bytes, the real SmolLM2."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from tests.ground.models import locate_real_models
from tests.unit.worker.inspect import builders as b
from worker.errors import InvalidWeights
from worker.inspect import gguf as g
from worker.inspect.gguf import GGUFHeader, read_gguf_header
from worker.inspect.hfconfig import template_uses_tools
from worker.inspect.reader import DEFAULT_CHUNK_SIZE, Budget, BytesSource, FileByteSource

FILE = "library/tiny:latest.gguf"
TOOLS_TEMPLATE = (
    "{%- if tools %}{{ '<tools>' }}{{ tools | tojson }}{% endif -%}"
    "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}{% endfor %}"
)
Q = gguf.GGMLQuantizationType


def _write(path: Path, arch: str, configure: Callable[[gguf.GGUFWriter], None]) -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    configure(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _tiny_model(writer: gguf.GGUFWriter) -> None:
    writer.add_name("tiny")
    writer.add_context_length(4096)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_chat_template(TOOLS_TEMPLATE)
    writer.add_tags(["text-generation", "chat"])
    writer.add_uint8("test.u8", 255)
    writer.add_int8("test.i8", -128)
    writer.add_uint16("test.u16", 65535)
    writer.add_int16("test.i16", -32768)
    writer.add_uint32("test.u32", 2**32 - 1)
    writer.add_int32("test.i32", -(2**31))
    writer.add_uint64("test.u64", 2**64 - 1)
    writer.add_int64("test.i64", -(2**63))
    writer.add_float32("test.f32", 0.5)
    writer.add_float64("test.f64", -1.25e300)
    writer.add_bool("test.yes", True)
    writer.add_bool("test.no", False)
    writer.add_string("test.utf8", "héllo ✓")
    writer.add_array("test.ints", [1, 2, 3])
    writer.add_array("test.floats", [0.5, 1.5])
    writer.add_array("test.nested", [[1, 2], [3], ["a", "bc"]])
    writer.add_token_list(["<s>", "</s>", "hello", "wörld"])
    writer.add_tensor("token_embd.weight", np.ones((4, 64), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones((128,), dtype=np.float16))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((2, 40), dtype=np.uint8), raw_dtype=Q.Q4_1)
    writer.add_tensor("blk.0.attn_k.weight", np.zeros((3, 34), dtype=np.uint8), raw_dtype=Q.Q8_0)
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((1, 144), dtype=np.uint8), raw_dtype=Q.Q4_K)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("gguf") / "tiny.gguf", "llama", _tiny_model)


def test_metadata_of_every_value_type(tiny_gguf: Path) -> None:
    header = read_gguf_header(FileByteSource(tiny_gguf))
    assert header.version == 3
    assert {k: v for k, v in header.metadata.items() if k.startswith("test.")} == {
        "test.u8": 255,
        "test.i8": -128,
        "test.u16": 65535,
        "test.i16": -32768,
        "test.u32": 2**32 - 1,
        "test.i32": -(2**31),
        "test.u64": 2**64 - 1,
        "test.i64": -(2**63),
        "test.f32": 0.5,
        "test.f64": -1.25e300,
        "test.yes": True,
        "test.no": False,
        "test.utf8": "héllo ✓",
    }
    assert dict(header.array_lengths) == {
        "general.tags": 2,
        "test.ints": 3,
        "test.floats": 2,
        "test.nested": 3,
        "tokenizer.ggml.tokens": 4,
    }
    assert dict(header.arrays) == {"general.tags": ("text-generation", "chat")}


def test_helpers_and_exact_parameter_count(tiny_gguf: Path) -> None:
    header = read_gguf_header(FileByteSource(tiny_gguf, name=FILE))
    assert header.file == FILE
    assert (header.architecture, header.name, header.context_length) == ("llama", "tiny", 4096)
    assert (header.file_type, header.file_type_label, header.pooling_type) == (15, "Q4_K_M", None)
    assert header.chat_template == TOOLS_TEMPLATE
    assert header.named_chat_templates == {}
    assert template_uses_tools(header.chat_template)
    dims = {t.name: (t.type_name, t.dims) for t in header.tensors}
    assert dims == {
        "token_embd.weight": ("F32", (64, 4)),
        "output_norm.weight": ("F16", (128,)),
        "blk.0.attn_q.weight": ("Q4_1", (64, 2)),
        "blk.0.attn_k.weight": ("Q8_0", (32, 3)),
        "blk.0.ffn_up.weight": ("Q4_K", (256, 1)),
    }
    assert header.parameter_count == 256 + 128 + 128 + 96 + 256
    assert header.tensor_type_bytes() == {
        "F32": 1024,
        "F16": 256,
        "Q4_K": 144,
        "Q8_0": 102,
        "Q4_1": 80,
    }


def test_tensor_offsets_match_the_reference_reader(tiny_gguf: Path) -> None:
    header = read_gguf_header(FileByteSource(tiny_gguf))
    reference = gguf.GGUFReader(tiny_gguf)
    ours = [(t.name, header.data_offset + t.offset, t.element_count) for t in header.tensors]
    theirs = [(t.name, int(t.data_offset), int(t.n_elements)) for t in reference.tensors]
    assert ours == theirs
    assert header.alignment == reference.alignment == 32


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4096])
def test_small_windows_give_the_same_header(tiny_gguf: Path, chunk_size: int) -> None:
    expected = read_gguf_header(FileByteSource(tiny_gguf))
    assert read_gguf_header(FileByteSource(tiny_gguf), chunk_size=chunk_size) == expected


def test_wanted_arrays_are_decoded_only_when_small(tiny_gguf: Path) -> None:
    header = read_gguf_header(
        FileByteSource(tiny_gguf),
        wanted_arrays=frozenset({"test.ints", "test.nested", "tokenizer.ggml.tokens"}),
    )
    assert dict(header.arrays) == {
        "test.ints": (1, 2, 3),
        "tokenizer.ggml.tokens": ("<s>", "</s>", "hello", "wörld"),
    }


def _embedding_model(writer: gguf.GGUFWriter) -> None:
    writer.add_context_length(512)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_custom_alignment(64)
    writer.add_tensor("a", np.ones((3,), dtype=np.float32))
    writer.add_tensor("b", np.ones((5, 7), dtype=np.float16))


def test_embedding_model_with_custom_alignment(tmp_path: Path) -> None:
    path = _write(tmp_path / "bge.gguf", "bert", _embedding_model)
    header = read_gguf_header(FileByteSource(path))
    assert (header.architecture, header.context_length, header.pooling_type) == (
        "bert",
        512,
        "mean",
    )
    assert (header.file_type_label, header.alignment, header.data_offset % 64) == ("F16", 64, 0)
    assert [t.offset for t in header.tensors] == [0, 64]
    assert header.parameter_count == 38
    assert header.chat_template is None


def _big_vocabulary(writer: gguf.GGUFWriter) -> None:
    tokens = [f"tok{i}" for i in range(150_000)]
    writer.add_context_length(32768)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 150_000)
    writer.add_token_merges([f"t {i}" for i in range(150_000)])
    writer.add_chat_template(TOOLS_TEMPLATE)
    writer.add_tensor("token_embd.weight", np.zeros((150_000, 1), dtype=np.float16))


@pytest.fixture(scope="module")
def vocab_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("gguf") / "vocab.gguf", "qwen2", _big_vocabulary)


def test_big_vocabulary_is_skipped_in_few_reads(vocab_gguf: Path) -> None:
    source = FileByteSource(vocab_gguf)
    header = read_gguf_header(source)
    assert header.array_lengths["tokenizer.ggml.tokens"] == 150_000
    assert header.array_lengths["tokenizer.ggml.merges"] == 150_000
    assert header.array_lengths["tokenizer.ggml.token_type"] == 150_000
    assert (header.context_length, header.parameter_count) == (32768, 150_000)
    assert template_uses_tools(header.chat_template or "")
    # One 1 MiB window per MiB of header, plus at most one re-read where an item crosses it.
    assert source.reads <= 2 * math.ceil(header.data_offset / DEFAULT_CHUNK_SIZE)
    assert source.bytes_read < header.data_offset + source.reads * DEFAULT_CHUNK_SIZE


def _kv(key: str, value_type: int, value: object) -> bytes:
    return b.gguf_kv(key, value_type, b.gguf_value(value_type, value))


def _nested(depth: int) -> bytes:
    inner = b.gguf_array(b.UINT8, [1])
    for _ in range(depth - 1):
        inner = struct.pack("<IQ", b.ARRAY, 1) + inner
    return inner


F32_16 = b.gguf_tensor("w", [16], 0, 0)
HOSTILE: list[Any] = [
    pytest.param(b.gguf_file(magic=b"GGML"), "not a GGUF file: magic b'GGML'", id="magic"),
    pytest.param(b"GGUF\x03\x00\x00\x00", "8 bytes is too small for a GGUF file", id="tiny"),
    pytest.param(b.gguf_file(version=1), "GGUF version 1 is not supported", id="version-1"),
    pytest.param(b.gguf_file(version=4), "GGUF version 4 is not supported", id="version-4"),
    pytest.param(
        b.gguf_file(version=3 << 24), "big-endian GGUF files are not supported", id="big-endian"
    ),
    pytest.param(
        b.gguf_file(tensor_count=2**40),
        "tensor count 1099511627776 exceeds the limit of 1000000",
        id="tensor-count-absurd",
    ),
    pytest.param(
        b.gguf_file(tensor_count=1000),
        "tensor count 1000 needs at least 24000 bytes",
        id="tensor-count-over-file",
    ),
    pytest.param(
        b.gguf_file(kv_count=2**63),
        "key/value count 9223372036854775808 exceeds the limit of 100000",
        id="kv-count-absurd",
    ),
    pytest.param(
        b.gguf_file(kv_count=50),
        "key/value count 50 needs at least 650 bytes",
        id="kv-count-over-file",
    ),
    pytest.param(
        b.gguf_file([b.gguf_string("general.name", declared_length=2**40)]),
        "metadata key: string length 1099511627776",
        id="key-length-absurd",
    ),
    pytest.param(
        b.gguf_file([b.gguf_string("k", declared_length=60_000) + b"\0" * 20]),
        "file is truncated",
        id="key-length-over-file",
    ),
    pytest.param(
        b.gguf_file([b.gguf_kv("k", b.STRING, b.gguf_string("v", declared_length=2**30))]),
        "value of 'k': string length 1073741824",
        id="string-over-limit",
    ),
    pytest.param(
        b.gguf_file([b.gguf_kv("k", b.STRING, b.gguf_string("v", declared_length=5000))]),
        "file is truncated",
        id="string-over-file",
    ),
    pytest.param(
        b.gguf_file([b.gguf_kv("k", 13, b"\0" * 8)]),
        "'k': unknown GGUF value type 13",
        id="unknown-type",
    ),
    pytest.param(
        b.gguf_file([b.gguf_kv("k", b.ARRAY, struct.pack("<IQ", 42, 1))]),
        "unknown GGUF array item type 42",
        id="unknown-item-type",
    ),
    pytest.param(
        b.gguf_file([b.gguf_kv("k", b.ARRAY, b.gguf_array(b.UINT8, [], count=2**30))]),
        "array length 1073741824 exceeds the limit",
        id="array-length-absurd",
    ),
    pytest.param(
        b.gguf_file([b.gguf_kv("k", b.ARRAY, b.gguf_array(b.UINT32, [1], count=1000))]),
        "array length 1000 needs at least 4000 bytes",
        id="array-over-file",
    ),
    pytest.param(
        b.gguf_file(
            [
                b.gguf_kv(
                    "k",
                    b.ARRAY,
                    struct.pack("<IQ", b.STRING, 1) + b.gguf_string("x", declared_length=2**21),
                )
            ]
        ),
        "string array 'k': an item of 2097152 bytes",
        id="array-item-over-limit",
    ),
    pytest.param(
        b.gguf_file([b.gguf_kv("k", b.ARRAY, _nested(5))]),
        "arrays nested deeper than 4 levels",
        id="nesting",
    ),
    pytest.param(
        b.gguf_file([_kv("k", b.UINT8, 1), _kv("k", b.UINT8, 2)]),
        "duplicate metadata key 'k'",
        id="duplicate-key",
    ),
    pytest.param(
        b.gguf_file([b.gguf_string(b"\xff") + struct.pack("<IB", b.UINT8, 1)]),
        "metadata key: not valid UTF-8",
        id="key-not-utf8",
    ),
    pytest.param(
        b.gguf_file(tensors=[b.gguf_string("w") + struct.pack("<I", 9) + b"\0" * 90]),
        "tensor 'w': 9 dimensions, more than 8",
        id="too-many-dims",
    ),
    pytest.param(
        b.gguf_file(tensors=[b.gguf_tensor("w", [2**40, 2**40], 0, 0)]),
        "overflow int64",
        id="dims-overflow",
    ),
    pytest.param(
        b.gguf_file(tensors=[b.gguf_tensor("w", [16], 0, 4)], data_size=128),
        "offset 4 is not 32-aligned",
        id="misaligned",
    ),
    pytest.param(
        b.gguf_file(tensors=[F32_16], data_size=32),
        "data [0, 64) runs past the 32-byte data section",
        id="data-past-end",
    ),
    pytest.param(
        b.gguf_file(tensors=[F32_16, b.gguf_tensor("v", [16], 0, 32)], data_size=128),
        "tensors 'w' and 'v' overlap at offset 32",
        id="overlap",
    ),
    pytest.param(
        b.gguf_file(tensors=[b.gguf_tensor("w", [33], 2, 0)], data_size=64),
        "first dimension 33 is not a multiple of the Q4_0 block size 32",
        id="partial-block",
    ),
    pytest.param(
        b.gguf_file(tensors=[F32_16, F32_16], data_size=128),
        "duplicate tensor names",
        id="duplicate-tensor",
    ),
    pytest.param(
        b.gguf_file([_kv("general.alignment", b.UINT32, 3)]),
        "general.alignment 3 is not a power of two",
        id="alignment",
    ),
    pytest.param(
        b.gguf_file([_kv("general.alignment", b.STRING, "32")]),
        "general.alignment '32' is not a power of two",
        id="alignment-type",
    ),
]


@pytest.mark.parametrize(("data", "message"), HOSTILE)
def test_hostile_headers_are_invalid_weights_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(InvalidWeights) as caught:
        read_gguf_header(BytesSource(FILE, data))
    assert str(caught.value).startswith(f"{FILE}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_real_writer_file(tiny_gguf: Path, cut: float) -> None:
    data = tiny_gguf.read_bytes()
    header_size = read_gguf_header(BytesSource("full", data)).data_offset
    with pytest.raises(InvalidWeights, match=r"^tiny\.gguf: .*(truncated|needs at least)"):
        read_gguf_header(BytesSource("tiny.gguf", data[: int(header_size * cut)]))
    with pytest.raises(InvalidWeights, match=r"^tiny\.gguf: .*runs past the"):
        read_gguf_header(BytesSource("tiny.gguf", data[: header_size + 100]))


def test_unknown_tensor_types_are_counted_but_not_size_checked() -> None:
    data = b.gguf_file(tensors=[b.gguf_tensor("w", [10, 3], 99, 0)])
    header = read_gguf_header(BytesSource(FILE, data))
    (tensor,) = header.tensors
    assert (tensor.type_name, tensor.byte_size, header.parameter_count) == (None, None, 30)
    assert header.tensor_type_bytes() == {}


def test_version_2_is_read() -> None:
    header = read_gguf_header(
        BytesSource(FILE, b.gguf_file([_kv("general.architecture", b.STRING, "gpt2")], version=2))
    )
    assert (header.version, header.architecture, header.context_length) == (2, "gpt2", None)


@pytest.mark.parametrize(
    ("file_type", "label"),
    [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (7, "Q8_0"),
        (10, "Q2_K"),
        (15, "Q4_K_M"),
        (17, "Q5_K_M"),
        (18, "Q6_K"),
        (30, "IQ4_XS"),
        (32, "BF16"),
        (38, "MXFP4_MOE"),
        (5, None),
        (1024, None),
        (9999, None),
    ],
)
def test_file_type_labels(file_type: int, label: str | None) -> None:
    data = b.gguf_file([_kv("general.file_type", b.UINT32, file_type)])
    assert read_gguf_header(BytesSource(FILE, data)).file_type_label == label


def test_file_type_table_agrees_with_llama_cpp() -> None:
    for number, member in gguf.LlamaFileType.__members__.items():
        if member.value < 1024:
            assert g.FILE_TYPE_LABELS[member.value] == number.removeprefix("MOSTLY_").removeprefix(
                "ALL_"
            )


def test_ggml_type_table_agrees_with_ggml() -> None:
    theirs = {t.value: (t.name, *gguf.GGML_QUANT_SIZES[t]) for t in gguf.GGMLQuantizationType}
    assert dict(g.GGML_TYPES) == theirs


@pytest.mark.parametrize(
    ("pooling", "label"),
    [(0, "none"), (1, "mean"), (2, "cls"), (3, "last"), (4, "rank"), (7, None)],
)
def test_pooling_types(pooling: int, label: str | None) -> None:
    kvs = [
        _kv("general.architecture", b.STRING, "bert"),
        _kv("bert.pooling_type", b.UINT32, pooling),
    ]
    assert read_gguf_header(BytesSource(FILE, b.gguf_file(kvs))).pooling_type == label


@pytest.fixture(scope="module")
def smollm2() -> tuple[FileByteSource, GGUFHeader, gguf.GGUFReader]:
    path = locate_real_models().smollm2_gguf
    source = FileByteSource(path)
    return source, read_gguf_header(source), gguf.GGUFReader(path)


def test_real_smollm2_helpers(smollm2: tuple[FileByteSource, GGUFHeader, gguf.GGUFReader]) -> None:
    source, header, _ = smollm2
    assert (header.version, header.architecture, header.context_length) == (3, "llama", 8192)
    assert (header.file_type_label, header.pooling_type) == ("Q4_1", None)
    assert header.chat_template is not None
    assert "<|im_start|>" in header.chat_template
    assert not template_uses_tools(header.chat_template)
    assert header.parameter_count == 134_515_008  # SmolLM2-135M
    # The header is 1.7 MB of a 98 MB file: two 1 MiB reads.
    assert header.data_offset + sum(header.tensor_type_bytes().values()) == source.size
    assert source.reads == 2
    assert source.bytes_read < source.size / 40


def test_real_smollm2_matches_the_reference_reader(
    smollm2: tuple[FileByteSource, GGUFHeader, gguf.GGUFReader],
) -> None:
    _, header, reference = smollm2
    scalars, lengths = {}, {}
    for key, field in reference.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            lengths[key] = len(field.data)
        else:
            scalars[key] = field.contents()
    assert dict(header.metadata) == scalars
    assert dict(header.array_lengths) == lengths
    assert header.version == reference.fields["GGUF.version"].contents()
    ours = [
        (t.name, t.dims, t.ggml_type, header.data_offset + t.offset, t.element_count, t.byte_size)
        for t in header.tensors
    ]
    theirs = [
        (
            t.name,
            tuple(int(d) for d in t.shape),
            int(t.tensor_type),
            int(t.data_offset),
            int(t.n_elements),
            int(t.n_bytes),
        )
        for t in reference.tensors
    ]
    assert ours == theirs
    assert header.parameter_count == sum(int(t.n_elements) for t in reference.tensors)


def test_header_cap_bounds_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(g, "MAX_HEADER_BYTES", 100)
    vocabulary = b.gguf_array(b.STRING, [f"token{i:04}" for i in range(20)])
    data = b.gguf_file([b.gguf_kv("tokenizer.ggml.tokens", b.ARRAY, vocabulary)])
    with pytest.raises(InvalidWeights, match=r"array length 20 needs .*capped at 100 bytes"):
        read_gguf_header(BytesSource(FILE, data))


def test_header_cap_bounds_the_whole_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(g, "MAX_HEADER_BYTES", 200)
    data = b.gguf_file([_kv("general.description", b.STRING, "x" * 300)])
    expected = r"header exceeds the 200-byte limit: 300 bytes are needed at offset 63"
    with pytest.raises(InvalidWeights, match=expected):
        read_gguf_header(BytesSource(FILE, data))


def test_header_cap_holds_while_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression, found by test_fuzz.py: strings each within MAX_STRING_BYTES but together
    past the cap were all fetched and kept before the cap was checked at the header's end, so
    a large file made the parser read and hold as much as it declared (a 4 GiB file whose header
    declares 11 strings of 16 MiB: 202 MB allocated). The cap now holds at every read."""
    monkeypatch.setattr(g, "MAX_HEADER_BYTES", 1 << 20)
    kvs = [_kv(f"test.s{i}", b.STRING, "x" * (256 << 10)) for i in range(12)]
    source = BytesSource(FILE, b.gguf_file(kvs))
    expected = r"header exceeds the 1048576-byte limit: 262144 bytes are needed at offset 786564$"
    with pytest.raises(InvalidWeights, match=expected):
        read_gguf_header(source)
    assert source.bytes_read <= 1 << 20


def test_named_chat_templates(tmp_path: Path) -> None:
    def configure(writer: gguf.GGUFWriter) -> None:
        writer.add_chat_template(
            [
                {"name": "default", "template": "{{ messages }}"},
                {"name": "tool_use", "template": TOOLS_TEMPLATE},
            ]
        )

    header = read_gguf_header(FileByteSource(_write(tmp_path / "t.gguf", "llama", configure)))
    assert header.chat_template == "{{ messages }}"
    assert header.named_chat_templates == {"tool_use": TOOLS_TEMPLATE}
    assert header.array_lengths["tokenizer.chat_templates"] == 1


# ---- budgets shared by the files of one model --------------------------------------------------


def _nested_empty_arrays(count: int) -> bytes:
    """A key whose value is ``count`` empty u8 arrays inside an array."""
    inner = struct.pack("<IQ", b.UINT8, 0) * count
    return b.gguf_kv("x.nested", b.ARRAY, struct.pack("<IQ", b.ARRAY, count) + inner)


def test_nested_arrays_are_budgeted() -> None:
    at_the_limit = b.gguf_file([_nested_empty_arrays(g.MAX_NESTED_ARRAYS)])
    assert read_gguf_header(BytesSource(FILE, at_the_limit)).array_lengths == {
        "x.nested": g.MAX_NESTED_ARRAYS
    }
    over = b.gguf_file([_nested_empty_arrays(g.MAX_NESTED_ARRAYS + 1)])
    with pytest.raises(InvalidWeights) as caught:
        read_gguf_header(BytesSource(FILE, over))
    assert caught.value.message == (
        f"{FILE}: 65537 nested arrays exceed the limit of 65536 for one model; real models "
        "have far fewer"
    )


def test_string_items_and_tensors_are_budgeted_across_files() -> None:
    budgets = g.Budgets(
        tensors=Budget("tensors", 3),
        strings=Budget("string array items", 5),
        nested=Budget("nested arrays", 0),
    )
    tokens = b.gguf_kv("tokenizer.ggml.tokens", b.ARRAY, b.gguf_array(b.STRING, ["a", "b", "c"]))
    pair = (b.gguf_tensor("t0", [32], 0, 0), b.gguf_tensor("t1", [32], 0, 128))
    first = b.gguf_file([tokens], pair, data_size=256)
    read_gguf_header(BytesSource("split-1.gguf", first), budgets=budgets)
    assert (budgets.tensors.used, budgets.strings.used) == (2, 3)
    with pytest.raises(InvalidWeights) as caught:
        read_gguf_header(BytesSource("split-2.gguf", first), budgets=budgets)
    assert caught.value.message == (
        "split-2.gguf: 3 string array items (and 3 in the files before it) exceed the limit of 5 "
        "for one model; real models have far fewer"
    )
    second = b.gguf_file([], pair, data_size=256)
    with pytest.raises(InvalidWeights, match=r"^split-3.gguf: 2 tensors \(and 2 in the files"):
        read_gguf_header(BytesSource("split-3.gguf", second), budgets=budgets)
