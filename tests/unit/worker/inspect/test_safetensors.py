"""Safetensors headers and indexes: files from the real writer, hostile bytes, the real MiniLM."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from tests.ground.models import locate_real_models
from tests.unit.worker.inspect.builders import safetensors_bytes
from worker.errors import InvalidWeights
from worker.inspect import safetensors as st
from worker.inspect.reader import Budget, BytesSource, FileByteSource
from worker.inspect.safetensors import (
    SafetensorsHeader,
    read_safetensors_header,
    read_safetensors_index,
)

FILE = "org/repo/model.safetensors"


def _parse(data: bytes, name: str = FILE) -> SafetensorsHeader:
    return read_safetensors_header(BytesSource(name, data))


def test_file_from_the_real_writer(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "embed.weight": np.zeros((30, 8), dtype=np.float32),
            "norm.bias": np.zeros((8,), dtype=np.float16),
            "position_ids": np.zeros((1, 12), dtype=np.int64),
            "mask": np.zeros((2, 3, 4), dtype=np.bool_),
            "scale": np.zeros((), dtype=np.float64),
            "empty": np.zeros((0, 5), dtype=np.uint8),
        },
        str(path),
        metadata={"format": "pt", "source": "test"},
    )
    source = FileByteSource(path)
    header = read_safetensors_header(source)
    assert header.file == "model.safetensors"
    assert dict(header.metadata) == {"format": "pt", "source": "test"}
    shapes = {t.name: (t.dtype, t.shape) for t in header.tensors}
    assert shapes == {
        "embed.weight": ("F32", (30, 8)),
        "norm.bias": ("F16", (8,)),
        "position_ids": ("I64", (1, 12)),
        "mask": ("BOOL", (2, 3, 4)),
        "scale": ("F64", ()),
        "empty": ("U8", (0, 5)),
    }
    assert header.parameter_count == 240 + 8 + 12 + 24 + 1 + 0
    assert header.dtype_bytes() == {"F32": 960, "I64": 96, "BOOL": 24, "F16": 16, "F64": 8, "U8": 0}
    assert header.data_size == source.size - 8 - header.header_size
    assert [t.begin for t in header.tensors] == sorted(t.begin for t in header.tensors)
    assert source.reads == 1


def test_every_safetensors_dtype_and_packed_sub_byte_sizes() -> None:
    entries, offset = {}, 0
    for index, (dtype, bits) in enumerate(sorted(st.DTYPE_BITS.items())):
        size = 16 * bits // 8
        entries[f"t{index}"] = {
            "dtype": dtype,
            "shape": [4, 4],
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header = _parse(safetensors_bytes(entries, offset))
    assert {t.dtype for t in header.tensors} == set(st.DTYPE_BITS)
    assert header.parameter_count == 16 * len(st.DTYPE_BITS)
    assert header.dtype_bytes()["F4"] == 8
    assert header.dtype_bytes()["F6_E2M3"] == 12


def _one_tensor(
    dtype: object = "F32", shape: Sequence[object] = (2, 3), offsets: Sequence[int] = (0, 24)
) -> dict[str, object]:
    return {"w": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}


HOSTILE = [
    pytest.param(
        safetensors_bytes({}, 0, declared_length=100 * 2**20 + 1),
        "exceeds the 104857600-byte limit",
        id="header-over-limit",
    ),
    pytest.param(
        safetensors_bytes({}, 0, declared_length=1000),
        "header length 1000 runs past the end of the 10-byte file",
        id="header-over-file",
    ),
    pytest.param(b"\x02\x00\x00", "3 bytes is too small", id="shorter-than-length"),
    pytest.param(safetensors_bytes(b"[1, 2]", 0), "header is not a JSON object", id="not-object"),
    pytest.param(safetensors_bytes(b"{\xff}", 0), "not valid UTF-8", id="not-utf8"),
    pytest.param(safetensors_bytes(b'{"w": ', 0), "not valid JSON", id="not-json"),
    pytest.param(
        safetensors_bytes(b"[" * 50_000 + b"]" * 50_000, 0), "nested too deeply", id="deep-nesting"
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(dtype="F128"), 24),
        "tensor 'w': unknown dtype 'F128'",
        id="bad-dtype",
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(dtype=7), 24), "unknown dtype 7", id="dtype-not-string"
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(shape=[1] * 17, offsets=(0, 4)), 4),
        "at most 16 dimensions",
        id="rank-17",
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(shape=(2, -3)), 24),
        "shape [2, -3] must hold integers",
        id="negative-dim",
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(shape=(2, True)), 24), "must hold integers", id="bool-dim"
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(shape=(2**49, 1)), 24), "must hold integers", id="absurd-dim"
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(offsets=(0,)), 24),
        "data_offsets must be a list of two",
        id="one-offset",
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(offsets=(8, 32)), 24),
        "[8, 32] lie outside the 24-byte data region",
        id="offsets-past-data",
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(offsets=(24, 0)), 24), "lie outside", id="offsets-reversed"
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(offsets=(0, 20)), 24),
        "F32 [2, 3] needs 24 bytes but data_offsets [0, 20] span 20",
        id="size-mismatch",
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(dtype="F4", shape=(3,), offsets=(0, 1)), 1),
        "F4 [3] needs 1.5 bytes",
        id="odd-packed-size",
    ),
    pytest.param(
        safetensors_bytes(
            {
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
            },
            16,
        ),
        "tensor 'b' [8, 16] overlaps tensor 'a', which ends at 16",
        id="overlap",
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(offsets=(8, 32)), 32),
        "8 unused bytes at [0, 8) before tensor 'w'",
        id="gap",
    ),
    pytest.param(
        safetensors_bytes(_one_tensor(), 30),
        "tensors cover 24 of the 30 data bytes",
        id="trailing-bytes",
    ),
    pytest.param(
        safetensors_bytes(b'{"w": {}, "w": {}}', 0), "duplicate key 'w'", id="duplicate-tensor"
    ),
    pytest.param(
        safetensors_bytes({"__metadata__": {"format": 1}}, 0),
        "__metadata__ must be a map of strings",
        id="metadata-not-strings",
    ),
    pytest.param(
        safetensors_bytes({"w": [1]}, 0),
        "tensor 'w': entry is not a JSON object",
        id="entry-not-object",
    ),
]


@pytest.mark.parametrize(("data", "message"), HOSTILE)
def test_hostile_headers_are_invalid_weights_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(InvalidWeights) as caught:
        _parse(data)
    assert str(caught.value).startswith(f"{FILE}: ")
    assert message in str(caught.value)


def test_header_length_is_checked_before_reading_the_header() -> None:
    source = BytesSource(FILE, safetensors_bytes({}, 0, declared_length=2**63))
    with pytest.raises(InvalidWeights, match="exceeds the 104857600-byte limit"):
        read_safetensors_header(source)
    assert (source.reads, source.bytes_read) == (1, source.size)


def test_empty_file_and_header_padding_are_accepted() -> None:
    assert _parse(safetensors_bytes(b"{}", 0)).tensors == ()
    padded = _parse(safetensors_bytes(json.dumps(_one_tensor()).encode() + b"    ", 24))
    assert padded.parameter_count == 6


def test_large_header_is_read_in_two_reads() -> None:
    names = {
        f"layer.{i}.weight": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]}
        for i in range(5000)
    }
    source = BytesSource(FILE, safetensors_bytes(names, 5000))
    header = read_safetensors_header(source)
    assert header.header_size > st.FIRST_READ_BYTES
    assert (header.parameter_count, source.reads) == (5000, 2)


INDEX = "org/repo/model.safetensors.index.json"


def _index(document: object) -> st.SafetensorsIndex:
    return read_safetensors_index(BytesSource(INDEX, json.dumps(document).encode()))


def test_index_lists_the_shards() -> None:
    index = _index(
        {
            "metadata": {"total_size": 1234},
            "weight_map": {
                "a": "model-00002-of-00002.safetensors",
                "b": "model-00001-of-00002.safetensors",
                "c": "model-00001-of-00002.safetensors",
            },
        }
    )
    assert index.shards == ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    assert (index.total_size, index.weight_map["a"], index.file) == (
        1234,
        "model-00002-of-00002.safetensors",
        INDEX,
    )
    assert _index({"weight_map": {}}).total_size is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"metadata": {}}, "weight_map must be a JSON object"),
        ({"weight_map": {"a": "../escape.safetensors"}}, "maps to '../escape.safetensors'"),
        ({"weight_map": {"a": "/etc/passwd"}}, "not a relative file path"),
        ({"weight_map": {"a": "dir//x.safetensors"}}, "not a relative file path"),
        ({"weight_map": {"a": "dir\\x.safetensors"}}, "not a relative file path"),
        ({"weight_map": {"a": 3}}, "maps to 3"),
        ([], "expected a JSON object"),
    ],
)
def test_hostile_indexes(document: object, message: str) -> None:
    with pytest.raises(InvalidWeights) as caught:
        _index(document)
    assert str(caught.value).startswith(f"{INDEX}: ")
    assert message in str(caught.value)


def test_index_entry_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "MAX_INDEX_ENTRIES", 3)
    with pytest.raises(InvalidWeights, match="weight_map has 4 entries, over the limit of 3"):
        _index({"weight_map": {str(i): "m.safetensors" for i in range(4)}})


class _HugeSource:
    """Claims a size over the cap; any read would be a bug."""

    name = INDEX
    size = 50 * 2**20 + 1

    def read_at(self, offset: int, length: int) -> bytes:
        raise AssertionError("read despite the size cap")


def test_index_size_is_bounded_before_reading() -> None:
    with pytest.raises(InvalidWeights, match=r"over the 52428800-byte limit"):
        read_safetensors_index(_HugeSource())


def test_real_minilm_matches_the_reference_loader() -> None:
    path = locate_real_models().minilm_dir / "model.safetensors"
    source = FileByteSource(path)
    header = read_safetensors_header(source)

    expected: dict[str, tuple[str, tuple[int, ...]]] = {}
    with safe_open(str(path), framework="numpy") as reference:
        metadata = reference.metadata()
        for name in reference.keys():  # noqa: SIM118 (safe_open is not a mapping)
            view = reference.get_slice(name)
            expected[name] = (view.get_dtype(), tuple(view.get_shape()))
    assert {t.name: (t.dtype, t.shape) for t in header.tensors} == expected
    assert dict(header.metadata) == metadata
    assert header.parameter_count == sum(math.prod(shape) for _, shape in expected.values())
    assert header.parameter_count == 22_713_728  # all-MiniLM-L6-v2: 22.7M parameters
    assert header.dtype_bytes() == {"F32": 90_852_864, "I64": 4096}
    assert 8 + header.header_size + header.data_size == path.stat().st_size
    assert (source.reads, source.bytes_read) == (1, st.FIRST_READ_BYTES)


# ---- the tensor budget shared by the shards of one model ---------------------------------------


def _empty_tensors(count: int, prefix: str = "t") -> bytes:
    # Joined as text: json.dumps of a million-entry dict takes seconds, this a fraction of one.
    entry = '{"dtype": "F16", "shape": [0], "data_offsets": [0, 0]}'
    header = "{" + ",".join(f'"{prefix}.{i}": {entry}' for i in range(count)) + "}"
    return safetensors_bytes(header.encode(), 0)


def test_tensors_are_budgeted_across_shards() -> None:
    budget = Budget("tensors", 100)
    for shard in (1, 2):
        read_safetensors_header(BytesSource(f"model-0000{shard}-of-00003.safetensors",
                                            _empty_tensors(40)), budget)  # fmt: skip
    assert budget.used == 80
    with pytest.raises(InvalidWeights) as caught:
        read_safetensors_header(
            BytesSource("model-00003-of-00003.safetensors", _empty_tensors(40)), budget
        )
    assert caught.value.message == (
        "model-00003-of-00003.safetensors: 40 tensors (and 80 in the files before it) exceed "
        "the limit of 100 for one model; real models have far fewer"
    )


def test_the_budget_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> object:
        raise AssertionError("decoded a header over the budget")

    monkeypatch.setattr(st, "decode_json", no_decoding)
    with pytest.raises(InvalidWeights, match=r"^org/repo/model.safetensors: 1000001 tensors "):
        _parse(_empty_tensors(st.MAX_TENSORS + 1))


def test_metadata_does_not_count_as_a_tensor() -> None:
    entry = {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]}
    data = safetensors_bytes({"__metadata__": {"format": "pt"}, "a": entry}, 0)
    budget = Budget("tensors", 1)
    read_safetensors_header(BytesSource(FILE, data), budget)
    assert budget.used == 1
