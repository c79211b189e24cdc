"""GGUF headers (version, key/value metadata, tensor infos) read without the weights.

A GGUF file starts with the magic ``GGUF``, a version, the tensor and key/value counts, the
key/value pairs, the tensor infos, then (aligned) the tensor data. Most of the header's bytes are
tokenizer arrays (vocabulary, merges, token types) that inspection does not need, so arrays are
skipped rather than decoded: fixed-size arrays by arithmetic, string arrays by walking their
length prefixes in the cursor's window. Only the keys in ``wanted_arrays`` are materialised.
Every count and length is bounded before use; failures are ``InvalidWeights`` naming the file.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from worker.errors import InvalidWeights
from worker.inspect.reader import DEFAULT_CHUNK_SIZE, Budget, ByteCursor, ByteSource

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Real headers are a few MB (a 262k vocabulary is ~8 MB); the cap bounds the work a hostile
# header can cause, since every count is checked against the bytes left below it.
MAX_HEADER_BYTES = 128 << 20
MAX_TENSORS = 1_000_000
"""Tensors in one file, and in all the splits of one model together (``Budgets``)."""
MAX_WALKED_STRINGS = 4_000_000
"""String array items walked in all the splits of one model: the largest real vocabularies
(262 144 tokens; 151 643 tokens + 151 387 merges) are far below; 16 M empty strings fit in the
128 MiB header cap and cost seconds each."""
MAX_NESTED_ARRAYS = 65_536
"""Arrays inside arrays, in all the splits of one model: llama.cpp writes none; each costs a
Python call, and 10 M of them fit in the header cap (14 to 29 s)."""
MAX_KEY_VALUES = 100_000
MAX_KEY_BYTES = 65_535
MAX_STRING_BYTES = 16 << 20
MAX_ARRAY_ITEM_BYTES = 1 << 20
MAX_ARRAY_LENGTH = 1 << 26
MAX_ARRAY_DEPTH = 4
MAX_STORED_ARRAY_LENGTH = 4096
MAX_DIMS = 8
MAX_ELEMENTS = (1 << 63) - 1
DEFAULT_ALIGNMENT = 32
DEFAULT_WANTED_ARRAYS = frozenset({"general.tags", "general.languages"})

Scalar = str | int | float | bool

# GGUF value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array,
# 10 u64, 11 i64, 12 f64.
_STRING, _ARRAY, _BOOL = 8, 9, 7
_SCALAR_FORMATS: Mapping[int, struct.Struct] = {
    code: struct.Struct(fmt)
    for code, fmt in {
        0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
        7: "<B", 10: "<Q", 11: "<q", 12: "<d",
    }.items()
}  # fmt: skip
# The smallest encoding of one array item, to reject counts the remaining bytes cannot hold.
_MIN_ITEM_BYTES = {_STRING: 8, _ARRAY: 12} | {c: f.size for c, f in _SCALAR_FORMATS.items()}

GGML_TYPES: Mapping[int, tuple[str, int, int]] = MappingProxyType({
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
})  # fmt: skip
"""ggml tensor type → (name, elements per block, bytes per block). Types missing here (new or
long removed) are accepted; their tensors are just not size-checked."""

FILE_TYPE_LABELS: Mapping[int, str] = MappingProxyType({
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_SOME_F16", 7: "Q8_0", 8: "Q5_0",
    9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
    15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS",
    21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S",
    27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    33: "Q4_0_4_4", 34: "Q4_0_4_8", 35: "Q4_0_8_8", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
})  # fmt: skip
"""llama.cpp's ``llama_ftype`` (``general.file_type``) → the label users know from file names."""

POOLING_TYPES: Mapping[int, str] = MappingProxyType(
    {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
)
"""llama.cpp's ``llama_pooling_type`` (``<arch>.pooling_type``); ``rank`` marks a reranker."""


@dataclass(frozen=True, slots=True)
class GGUFTensorInfo:
    name: str
    dims: tuple[int, ...]
    """Logical element counts per dimension (also for quantized types)."""
    ggml_type: int
    offset: int
    """Relative to the start of the data section."""

    @property
    def element_count(self) -> int:
        return math.prod(self.dims)

    @property
    def type_name(self) -> str | None:
        known = GGML_TYPES.get(self.ggml_type)
        return known[0] if known else None

    @property
    def byte_size(self) -> int | None:
        """Bytes of data, or None for a ggml type this module does not know."""
        known = GGML_TYPES.get(self.ggml_type)
        if known is None:
            return None
        _, block, block_bytes = known
        return self.element_count // block * block_bytes


@dataclass(frozen=True)
class GGUFHeader:
    file: str
    version: int
    metadata: Mapping[str, Scalar]
    """Every scalar and string key/value; arrays are not here."""
    arrays: Mapping[str, tuple[Scalar, ...]]
    """The wanted arrays of scalars or strings (at most MAX_STORED_ARRAY_LENGTH items)."""
    array_lengths: Mapping[str, int]
    """Every array key → its item count (e.g. the vocabulary size), decoded or not."""
    tensors: tuple[GGUFTensorInfo, ...]
    alignment: int
    data_offset: int
    """Absolute file offset of the tensor data: the header's size."""

    def _text(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None

    def _count(self, key: str) -> int | None:
        value = self.metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def architecture(self) -> str | None:
        return self._text("general.architecture")

    @property
    def name(self) -> str | None:
        return self._text("general.name")

    @property
    def chat_template(self) -> str | None:
        return self._text("tokenizer.chat_template")

    @property
    def named_chat_templates(self) -> dict[str, str]:
        """Extra templates stored as ``tokenizer.chat_template.<name>`` (e.g. ``tool_use``)."""
        prefix = "tokenizer.chat_template."
        return {
            key.removeprefix(prefix): value
            for key, value in self.metadata.items()
            if key.startswith(prefix) and isinstance(value, str)
        }

    @property
    def context_length(self) -> int | None:
        return self._count(f"{self.architecture}.context_length") if self.architecture else None

    @property
    def file_type(self) -> int | None:
        return self._count("general.file_type")

    @property
    def file_type_label(self) -> str | None:
        """``Q4_K_M``, ``F16``…; None when the key is absent or the number is not in the table."""
        file_type = self.file_type
        return None if file_type is None else FILE_TYPE_LABELS.get(file_type)

    @property
    def pooling_type(self) -> str | None:
        """``mean``, ``cls``, ``last``, ``rank`` or ``none``; None when absent or unknown."""
        if not self.architecture:
            return None
        pooling = self._count(f"{self.architecture}.pooling_type")
        return None if pooling is None else POOLING_TYPES.get(pooling)

    @property
    def parameter_count(self) -> int:
        return sum(tensor.element_count for tensor in self.tensors)

    def tensor_type_bytes(self) -> dict[str, int]:
        """Bytes of tensor data per ggml type name, largest first (unknown types left out)."""
        histogram: dict[str, int] = {}
        for tensor in self.tensors:
            size, type_name = tensor.byte_size, tensor.type_name
            if size is not None and type_name is not None:
                histogram[type_name] = histogram.get(type_name, 0) + size
        return dict(sorted(histogram.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class Budgets:
    """What the headers of one model's files may cost together (see ``reader.Budget``)."""

    tensors: Budget = field(default_factory=lambda: Budget("tensors", MAX_TENSORS))
    strings: Budget = field(
        default_factory=lambda: Budget("string array items", MAX_WALKED_STRINGS)
    )
    nested: Budget = field(default_factory=lambda: Budget("nested arrays", MAX_NESTED_ARRAYS))


def read_gguf_header(
    source: ByteSource,
    *,
    wanted_arrays: frozenset[str] = DEFAULT_WANTED_ARRAYS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    budgets: Budgets | None = None,
) -> GGUFHeader:
    """Read and validate a GGUF header through ``chunk_size`` reads of ``source``, spending on
    ``budgets`` (shared by the splits of one model; budgets of its own when None)."""
    # The cap holds while reading: strings each within their limit cannot add up past it.
    cursor = ByteCursor(source, chunk_size=chunk_size, limit=MAX_HEADER_BYTES)
    parser = _Parser(cursor, wanted_arrays, budgets or Budgets())
    return parser.header()


class _Parser:
    def __init__(self, cursor: ByteCursor, wanted_arrays: frozenset[str], budgets: Budgets) -> None:
        self._cursor = cursor
        self._budgets = budgets
        self._name = cursor.source.name
        self._wanted = wanted_arrays
        self._metadata: dict[str, Scalar] = {}
        self._arrays: dict[str, tuple[Scalar, ...]] = {}
        self._array_lengths: dict[str, int] = {}

    def _fail(self, message: str) -> InvalidWeights:
        return InvalidWeights(f"{self._name}: {message}")

    def header(self) -> GGUFHeader:
        version = self._preamble()
        tensor_count = self._bounded_count("tensor count", MAX_TENSORS, 8 + 4 + 4 + 8)
        kv_count = self._bounded_count("key/value count", MAX_KEY_VALUES, 8 + 4 + 1)
        for _ in range(kv_count):
            self._key_value()
        self._budgets.tensors.spend(self._name, tensor_count)
        tensors = [self._tensor_info() for _ in range(tensor_count)]
        if self._cursor.position > MAX_HEADER_BYTES:
            raise self._fail(
                f"header of {self._cursor.position} bytes exceeds the {MAX_HEADER_BYTES}-byte limit"
            )
        alignment = self._alignment()
        data_offset = -(-self._cursor.position // alignment) * alignment
        self._check_tensors(tensors, alignment, self._cursor.size - data_offset)
        return GGUFHeader(
            file=self._name,
            version=version,
            metadata=MappingProxyType(self._metadata),
            arrays=MappingProxyType(self._arrays),
            array_lengths=MappingProxyType(self._array_lengths),
            tensors=tuple(tensors),
            alignment=alignment,
            data_offset=data_offset,
        )

    def _preamble(self) -> int:
        if self._cursor.size < 24:
            raise self._fail(f"{self._cursor.size} bytes is too small for a GGUF file")
        magic = self._cursor.take(4)
        if magic != MAGIC:
            raise self._fail(f"not a GGUF file: magic {magic!r}, expected {MAGIC!r}")
        version = self._cursor.u32()
        if version in SUPPORTED_VERSIONS:
            return version
        if version & 0xFFFF == 0 and version >> 24 in SUPPORTED_VERSIONS:
            raise self._fail("big-endian GGUF files are not supported; use a little-endian export")
        raise self._fail(
            f"GGUF version {version} is not supported (supported: 2, 3); re-export the model "
            "with a current llama.cpp"
        )

    def _bounded_count(self, what: str, limit: int, min_item_bytes: int) -> int:
        count = self._cursor.u64()
        if count > limit:
            raise self._fail(f"{what} {count} exceeds the limit of {limit}")
        self._check_fits(what, count, min_item_bytes)
        return count

    def _check_fits(self, what: str, count: int, min_item_bytes: int) -> None:
        """A count whose smallest encoding overruns the file (or the header cap) is rejected
        before any loop, which bounds every loop by the bytes actually there."""
        end = min(self._cursor.size, MAX_HEADER_BYTES)
        remaining = max(end - self._cursor.position, 0)
        if count * min_item_bytes > remaining:
            raise self._fail(
                f"{what} {count} needs at least {count * min_item_bytes} bytes but only "
                f"{remaining} remain after offset {self._cursor.position}"
                + ("" if end == self._cursor.size else f" (headers are capped at {end} bytes)")
            )

    def _string(self, limit: int, what: str, *, strict: bool = False) -> str:
        length = self._cursor.u64()
        if length > limit:
            raise self._fail(
                f"{what}: string length {length} at offset {self._cursor.position - 8} exceeds "
                f"the {limit}-byte limit"
            )
        raw = self._cursor.take(length)
        try:
            return raw.decode("utf-8", errors="strict" if strict else "replace")
        except UnicodeDecodeError as exc:
            raise self._fail(f"{what}: not valid UTF-8") from exc

    def _key_value(self) -> None:
        key = self._string(MAX_KEY_BYTES, "metadata key", strict=True)
        if key in self._metadata or key in self._array_lengths:
            raise self._fail(f"duplicate metadata key {key!r}")
        value_type = self._cursor.u32()
        if value_type == _ARRAY:
            self._array(key)
        else:
            self._metadata[key] = self._scalar_or_string(value_type, key)

    def _scalar_or_string(self, value_type: int, key: str) -> Scalar:
        if value_type == _STRING:
            return self._string(MAX_STRING_BYTES, f"value of {key!r}")
        fmt = _SCALAR_FORMATS.get(value_type)
        if fmt is None:
            raise self._fail(f"{key!r}: unknown GGUF value type {value_type}")
        value = self._cursor.unpack(fmt)[0]
        if value_type == _BOOL:
            return value != 0
        assert isinstance(value, int | float)
        return value

    def _array_header(self, key: str) -> tuple[int, int]:
        item_type, count = self._cursor.u32(), self._cursor.u64()
        if item_type not in _MIN_ITEM_BYTES:
            raise self._fail(f"{key!r}: unknown GGUF array item type {item_type}")
        if count > MAX_ARRAY_LENGTH:
            raise self._fail(
                f"{key!r}: array length {count} exceeds the limit of {MAX_ARRAY_LENGTH}"
            )
        self._check_fits(f"{key!r}: array length", count, _MIN_ITEM_BYTES[item_type])
        return item_type, count

    def _array(self, key: str) -> None:
        item_type, count = self._array_header(key)
        self._array_lengths[key] = count
        storable = item_type != _ARRAY and count <= MAX_STORED_ARRAY_LENGTH
        if key in self._wanted and storable:
            self._arrays[key] = tuple(self._array_item(item_type, key) for _ in range(count))
        else:
            self._skip_items(key, item_type, count, depth=1)

    def _array_item(self, item_type: int, key: str) -> Scalar:
        if item_type == _STRING:
            return self._string(MAX_ARRAY_ITEM_BYTES, f"item of {key!r}")
        return self._scalar_or_string(item_type, key)

    def _skip_items(self, key: str, item_type: int, count: int, depth: int) -> None:
        if item_type == _STRING:
            self._budgets.strings.spend(self._name, count)
            self._cursor.skip_prefixed(count, MAX_ARRAY_ITEM_BYTES, f"string array {key!r}")
        elif item_type == _ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise self._fail(f"{key!r}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels")
            self._budgets.nested.spend(self._name, count)
            for _ in range(count):
                inner_type, inner_count = self._array_header(key)
                self._skip_items(key, inner_type, inner_count, depth + 1)
        else:
            self._cursor.skip(count * _SCALAR_FORMATS[item_type].size)

    def _tensor_info(self) -> GGUFTensorInfo:
        name = self._string(MAX_KEY_BYTES, "tensor name", strict=True)
        n_dims = self._cursor.u32()
        if n_dims > MAX_DIMS:
            raise self._fail(f"tensor {name!r}: {n_dims} dimensions, more than {MAX_DIMS}")
        dims = tuple(self._cursor.u64() for _ in range(n_dims))
        if math.prod(dims) > MAX_ELEMENTS:
            raise self._fail(f"tensor {name!r}: dimensions {list(dims)} overflow int64")
        ggml_type, offset = self._cursor.u32(), self._cursor.u64()
        return GGUFTensorInfo(name=name, dims=dims, ggml_type=ggml_type, offset=offset)

    def _alignment(self) -> int:
        alignment = self._metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if (
            isinstance(alignment, int)
            and not isinstance(alignment, bool)
            and 0 < alignment <= 1 << 20
            and alignment & (alignment - 1) == 0
        ):
            return alignment
        raise self._fail(f"general.alignment {alignment!r} is not a power of two up to 1 MiB")

    def _check_tensors(self, tensors: list[GGUFTensorInfo], alignment: int, data_size: int) -> None:
        """Names unique; offsets aligned; known-size tensors inside the data and disjoint."""
        if len({tensor.name for tensor in tensors}) != len(tensors):
            raise self._fail("duplicate tensor names")
        extents: list[tuple[int, int, str]] = []
        for tensor in tensors:
            where = f"tensor {tensor.name!r}"
            if tensor.offset % alignment:
                raise self._fail(f"{where}: offset {tensor.offset} is not {alignment}-aligned")
            known = GGML_TYPES.get(tensor.ggml_type)
            if known is None:
                continue
            if tensor.dims and tensor.dims[0] % known[1]:
                raise self._fail(
                    f"{where}: first dimension {tensor.dims[0]} is not a multiple of the "
                    f"{known[0]} block size {known[1]}"
                )
            end = tensor.offset + (tensor.byte_size or 0)
            if end > data_size:
                raise self._fail(
                    f"{where}: data [{tensor.offset}, {end}) runs past the {data_size}-byte "
                    "data section; the file is truncated"
                )
            extents.append((tensor.offset, end, tensor.name))
        extents.sort()
        for (_, end, first), (begin, _, second) in itertools.pairwise(extents):
            if begin < end:
                raise self._fail(f"tensors {first!r} and {second!r} overlap at offset {begin}")
