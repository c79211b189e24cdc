"""Safetensors headers and ``model.safetensors.index.json``, read and validated without the weights.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (tensor name →
dtype, shape, data offsets; optional ``__metadata__`` string map), then the data region. The
header is checked the way the reference loader checks it, so a file accepted here loads later:
known dtypes, sane shapes, byte sizes that match the shapes, and tensors that tile the data
region exactly (no overlap, no gap, no trailing bytes). Parameter counts come from the shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from worker.errors import InvalidWeights
from worker.inspect.reader import Budget, ByteCursor, ByteSource, decode_json, read_json_object

MAX_HEADER_BYTES = 100 << 20
MAX_RANK = 16
MAX_DIM = 1 << 48
MAX_INDEX_BYTES = 50 << 20
MAX_INDEX_ENTRIES = 1_000_000
MAX_TENSORS = 1_000_000
"""Tensors in all the shards of one model together. The largest real checkpoints have about
100 000 (DeepSeek-V3: ~91 000 in 163 shards); per-expert GPTQ exports of 1T-parameter MoE models
reach ~300 000. A 100 MiB header holds ~1.3 M, and three such shards cost ~2 GiB of memory."""
# One read fetches the length and, for nearly every real file, the whole header with it.
FIRST_READ_BYTES = 128 << 10

DTYPE_BITS: Mapping[str, int] = MappingProxyType(
    {
        "BOOL": 8,
        "U8": 8,
        "I8": 8,
        "F8_E5M2": 8,
        "F8_E4M3": 8,
        "F8_E4M3FNUZ": 8,
        "F8_E5M2FNUZ": 8,
        "F8_E8M0": 8,
        "I16": 16,
        "U16": 16,
        "F16": 16,
        "BF16": 16,
        "I32": 32,
        "U32": 32,
        "F32": 32,
        "I64": 64,
        "U64": 64,
        "F64": 64,
        "C64": 64,
        # Packed sub-byte floats: the shape counts elements, so bytes = elements * bits / 8.
        "F4": 4,
        "F6_E2M3": 6,
        "F6_E3M2": 6,
    }
)
"""Every dtype the safetensors format defines, with its width in bits."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    """Start of the tensor's bytes, relative to the data region (after the header)."""
    end: int

    @property
    def element_count(self) -> int:
        return math.prod(self.shape)

    @property
    def byte_size(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    file: str
    tensors: tuple[TensorInfo, ...]
    """In data-region order."""
    metadata: Mapping[str, str]
    header_size: int
    """N, the JSON header's length; the data region starts at 8 + N."""

    @property
    def parameter_count(self) -> int:
        return sum(tensor.element_count for tensor in self.tensors)

    @property
    def data_size(self) -> int:
        return sum(tensor.byte_size for tensor in self.tensors)

    def dtype_bytes(self) -> dict[str, int]:
        """Bytes of tensor data per dtype, largest first (what the weights mostly are)."""
        histogram: dict[str, int] = {}
        for tensor in self.tensors:
            histogram[tensor.dtype] = histogram.get(tensor.dtype, 0) + tensor.byte_size
        return dict(sorted(histogram.items(), key=lambda item: (-item[1], item[0])))


def tensor_budget() -> Budget:
    """The budget of ``MAX_TENSORS`` to share between the shards of one model."""
    return Budget("tensors", MAX_TENSORS)


def read_safetensors_header(source: ByteSource, budget: Budget | None = None) -> SafetensorsHeader:
    """Read and validate the header of one safetensors file, spending its tensors on ``budget``
    (a budget of its own when None)."""
    name = source.name
    if source.size < 8:
        raise InvalidWeights(f"{name}: {source.size} bytes is too small for a safetensors file")
    cursor = ByteCursor(source, chunk_size=FIRST_READ_BYTES)
    header_size = cursor.u64()
    if header_size > MAX_HEADER_BYTES:
        raise InvalidWeights(
            f"{name}: safetensors header length {header_size} exceeds the "
            f"{MAX_HEADER_BYTES}-byte limit; this is not a valid safetensors file"
        )
    if 8 + header_size > source.size:
        raise InvalidWeights(
            f"{name}: safetensors header length {header_size} runs past the end of the "
            f"{source.size}-byte file; the file is truncated or not safetensors"
        )
    raw = cursor.take(header_size)
    budget = budget or tensor_budget()
    # Every entry is a JSON object, so "{" bounds their number before decoding builds them
    # (less the top level and __metadata__; braces inside strings only make the bound stricter).
    budget.check(name, max(raw.count(b"{") - 1 - (b'"__metadata__"' in raw), 0))
    document = decode_json(name, raw, reject_duplicates=True)
    del raw
    if not isinstance(document, dict):
        raise InvalidWeights(f"{name}: safetensors header is not a JSON object")
    metadata = _metadata(name, document.pop("__metadata__", None))
    budget.spend(name, len(document))
    data_size = source.size - 8 - header_size
    tensors = [_tensor(name, key, entry, data_size) for key, entry in document.items()]
    tensors.sort(key=lambda tensor: (tensor.begin, tensor.end))
    _check_tiling(name, tensors, data_size)
    return SafetensorsHeader(
        file=name,
        tensors=tuple(tensors),
        metadata=MappingProxyType(metadata),
        header_size=header_size,
    )


def _metadata(name: str, raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise InvalidWeights(f"{name}: __metadata__ must be a map of strings to strings")
    return dict(raw)


def _is_int(value: object) -> bool:
    # JSON true/false arrive as bool, which Python also counts as int.
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor(name: str, key: str, entry: object, data_size: int) -> TensorInfo:
    where = f"{name}: tensor {key!r}"
    if not isinstance(entry, dict):
        raise InvalidWeights(f"{where}: entry is not a JSON object")
    dtype = entry.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise InvalidWeights(f"{where}: unknown dtype {dtype!r}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise InvalidWeights(f"{where}: shape must be a list of at most {MAX_RANK} dimensions")
    if not all(_is_int(dim) and 0 <= dim <= MAX_DIM for dim in shape):
        raise InvalidWeights(f"{where}: shape {shape} must hold integers in [0, {MAX_DIM}]")
    offsets = entry.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise InvalidWeights(f"{where}: data_offsets must be a list of two integers")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise InvalidWeights(
            f"{where}: data_offsets [{begin}, {end}] lie outside the {data_size}-byte data region"
        )
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - begin:
        raise InvalidWeights(
            f"{where}: {dtype} {shape} needs {bits / 8:g} bytes but data_offsets "
            f"[{begin}, {end}] span {end - begin}"
        )
    return TensorInfo(name=key, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def _check_tiling(name: str, tensors: list[TensorInfo], data_size: int) -> None:
    """The tensors, in offset order, must cover the data region exactly once."""
    covered, previous = 0, "the header"
    for tensor in tensors:
        if tensor.begin < covered:
            raise InvalidWeights(
                f"{name}: tensor {tensor.name!r} [{tensor.begin}, {tensor.end}] overlaps "
                f"{previous}, which ends at {covered}"
            )
        if tensor.begin > covered:
            raise InvalidWeights(
                f"{name}: {tensor.begin - covered} unused bytes at [{covered}, {tensor.begin}) "
                f"before tensor {tensor.name!r}"
            )
        covered, previous = tensor.end, f"tensor {tensor.name!r}"
    if covered != data_size:
        raise InvalidWeights(
            f"{name}: tensors cover {covered} of the {data_size} data bytes; "
            f"{data_size - covered} trailing bytes belong to no tensor"
        )


@dataclass(frozen=True)
class SafetensorsIndex:
    """``model.safetensors.index.json``: which shard file holds each tensor."""

    file: str
    weight_map: Mapping[str, str]
    total_size: int | None
    """``metadata.total_size`` when present: the shards' tensor bytes, per the exporter."""

    @property
    def shards(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.weight_map.values())))


def read_safetensors_index(source: ByteSource) -> SafetensorsIndex:
    """Read a sharded checkpoint's index, bounding its size and entry count."""
    name = source.name
    document = read_json_object(source, MAX_INDEX_BYTES)
    weight_map = document.get("weight_map")
    if not isinstance(weight_map, dict):
        raise InvalidWeights(f"{name}: weight_map must be a JSON object")
    if len(weight_map) > MAX_INDEX_ENTRIES:
        raise InvalidWeights(
            f"{name}: weight_map has {len(weight_map)} entries, over the limit of "
            f"{MAX_INDEX_ENTRIES}"
        )
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not _is_plain_relative_path(shard):
            raise InvalidWeights(
                f"{name}: tensor {tensor!r} maps to {shard!r}, which is not a relative file path "
                "inside the repository"
            )
    return SafetensorsIndex(
        file=name,
        weight_map=MappingProxyType(weight_map),
        total_size=_total_size(document.get("metadata")),
    )


def _is_plain_relative_path(path: str) -> bool:
    # Shard names become paths we fetch and write: nothing absolute, no parent segments.
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _total_size(metadata: object) -> int | None:
    if isinstance(metadata, dict):
        total = metadata.get("total_size")
        if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
            return total
    return None
