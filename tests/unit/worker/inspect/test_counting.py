"""Parameter counts from tallies: exact as a per-tensor count, one shard's header at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save

from tests.unit.worker.inspect.memory_source import MemorySource
from worker.errors import InvalidWeights
from worker.inspect import safetensors as sf
from worker.inspect.counting import PACKINGS, TensorTally, parameter_count
from worker.inspect.hfconfig import Quantization
from worker.inspect.reader import BytesSource
from worker.inspect.resolve import inspect_source
from worker.inspect.safetensors import DTYPE_BITS, read_safetensors_header

LLAMA = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode()
SUFFIXES = sorted({s for p in PACKINGS.values() for s in (*p.packed, *p.auxiliary)})
DTYPES = {"I32": np.int32, "U8": np.uint8, "F16": np.float16, "I8": np.int8}


def _per_tensor(shapes: dict[str, tuple[str, tuple[int, ...]]], q: Quantization) -> int | None:
    """The count the way it was computed before tallies: tensor by tensor."""
    packing = PACKINGS[q.method]
    total = 0
    for name, (dtype, shape) in shapes.items():
        if name.endswith(packing.auxiliary):
            continue
        elements = int(np.prod(shape))
        if packing.packed and name.endswith(packing.packed) and q.bits:
            if elements * DTYPE_BITS[dtype] % q.bits:
                return None
            total += elements * DTYPE_BITS[dtype] // q.bits
        else:
            total += elements
    return total


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    tensors=st.dictionaries(
        st.builds(lambda i, s: f"l{i}{s}", st.integers(0, 20), st.sampled_from(["", *SUFFIXES])),
        st.tuples(st.sampled_from(sorted(DTYPES)), st.lists(st.integers(0, 7), max_size=3)),
        max_size=12,
    ),
    method=st.sampled_from(sorted(PACKINGS)),
    bits=st.sampled_from([2, 3, 4, 8]),
)
def test_the_tally_counts_as_tensor_by_tensor(
    tensors: dict[str, tuple[str, list[int]]], method: str, bits: int
) -> None:
    shapes = {name: (dtype, tuple(shape)) for name, (dtype, shape) in tensors.items()}
    arrays = {n: np.zeros(shape, dtype=DTYPES[d]) for n, (d, shape) in shapes.items()}
    tally = TensorTally()
    tally.add(read_safetensors_header(BytesSource("m.safetensors", save(arrays))))
    quantization = Quantization(method=method, bits=bits)
    assert parameter_count(tally, quantization, []) == _per_tensor(shapes, quantization)


def test_a_packed_group_that_does_not_pack_whole_values_is_unknown() -> None:
    arrays = {"a.qweight": np.zeros((3,), dtype=np.int32), "b.qweight": np.zeros((4,), np.int32)}
    tally = TensorTally()
    tally.add(read_safetensors_header(BytesSource("m.safetensors", save(arrays))))
    notes: list[str] = []
    assert parameter_count(tally, Quantization("gptq", 3), notes) is None
    assert notes == [".qweight tensors: I32 does not pack whole 3-bit values"]
    assert parameter_count(tally, Quantization("gptq", 4), notes) == 7 * 8


def _shard(count: int, prefix: str) -> bytes:
    return save({f"{prefix}.{i}": np.zeros((2,), dtype=np.float16) for i in range(count)})


def test_the_tensor_budget_spans_every_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sf, "MAX_TENSORS", 100)
    files = {f"model-0000{k}-of-00003.safetensors": _shard(40, f"s{k}") for k in (1, 2, 3)}
    with pytest.raises(InvalidWeights) as caught:
        inspect_source(MemorySource({**files, "config.json": LLAMA}))
    assert caught.value.message == (
        "model-00003-of-00003.safetensors: 40 tensors (and 80 in the files before it) exceed "
        "the limit of 100 for one model; real models have far fewer"
    )
    files["model-00003-of-00003.safetensors"] = _shard(20, "s3")
    resolved = inspect_source(MemorySource({**files, "config.json": LLAMA})).resolved
    assert resolved.parameter_count == 200
