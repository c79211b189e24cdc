"""Fuzzing both header parsers: random bytes, and real headers mutated field by field.

The property (from the issue): whatever the bytes, ``read_safetensors_header`` and
``read_gguf_header`` either return a header or raise ``InvalidWeights`` whose message starts with
the file's name — no other exception escapes — and the peak of Python allocations during one
parse (tracemalloc) stays under a fixed bound even when a length or count field declares
gigabytes: memory may follow the bytes that are there, up to the header caps, never a declared
size.

Inputs: fully random bytes; random bytes behind a valid preamble; safetensors JSON documents
built from hostile values, or valid ones with one value made hostile; and seeds mutated by byte
flips, truncations, insertions, deletions and overwrites of length/count fields with huge values
(2**31, 2**63-1, file size ± 1…). The seeds are files from the real writers
(``safetensors.numpy.save_file``, ``gguf.GGUFWriter``) and the first 4 MiB of the real MiniLM and
SmolLM2 files, parsed against the real files' sizes; a small walker below locates every length
and count field of a valid seed so overwrites hit them, not just random bytes. Every field of the
small seeds is also overwritten with every huge value, exhaustively. Last, sparse 4 GiB GGUF
files whose headers declare big strings again and again, each within its own limit: that case
found the header cap enforced only once the whole header had been read (a 4 GiB file could make
the parser read and keep 200 MB and more); ``ByteCursor``'s ``limit`` now holds it at every read,
with a regression test in ``test_gguf.py``.

Deterministic and quick: ``derandomize=True``, no example database, fixed example counts (a
tenth of them in ``make unit``: ``tests/unit/fuzzing.py``).
"""

from __future__ import annotations

import bisect
import math
import os
import re
import struct
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from tests.ground.models import RealModels
from tests.unit.fuzzing import examples
from tests.unit.worker.inspect.builders import safetensors_bytes
from worker.errors import InvalidWeights, WorkerError
from worker.inspect.gguf import (
    MAX_ARRAY_ITEM_BYTES,
    MAX_NESTED_ARRAYS,
    MAX_STRING_BYTES,
    read_gguf_header,
)
from worker.inspect.gguf import MAX_HEADER_BYTES as GGUF_MAX_HEADER_BYTES
from worker.inspect.gguf import Budgets as GGUFBudgets
from worker.inspect.reader import (
    DEFAULT_CHUNK_SIZE,
    Budget,
    ByteSource,
    BytesSource,
    FileByteSource,
    truncated,
)
from worker.inspect.safetensors import DTYPE_BITS, read_safetensors_header
from worker.inspect.safetensors import MAX_TENSORS as ST_MAX_TENSORS

ALLOCATION_BOUND = 32 << 20
"""Peak traced allocation of one parse of a file of a few MiB (or of a real file's first 4 MiB)."""
SPARSE_FILE_BYTES = 4 << 30
SPARSE_ALLOCATION_BOUND = GGUF_MAX_HEADER_BYTES + (64 << 20)
"""The same for a GGUF file of gigabytes whose header declares big strings: the header cap
(128 MiB of strings may be kept) plus room for one string in flight; never the file's size."""
REAL_PREFIX_BYTES = 4 << 20
"""How much of each real file becomes a seed: both headers (11 KB, 1.8 MB) and the 1 MiB window
the GGUF parser reads past the end of its header."""
ST_NAME = "fuzz/model.safetensors"
GGUF_NAME = "fuzz/model.gguf"
WANTED = frozenset({"general.tags", "test.ints", "tokenizer.ggml.tokens", "test.nested"})

Parse = Callable[[ByteSource], object]

# Besides its example database (off below), Hypothesis caches Unicode tables and constants in
# ./.hypothesis; they go to the temp directory instead, so a run writes nothing in the repository.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "ai-models-hypothesis")
)


def _fuzz_settings(full: int) -> settings:
    return settings(
        max_examples=examples(full),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---- the property ------------------------------------------------------------------------------


def _parse_safetensors(source: ByteSource) -> object:
    return read_safetensors_header(source)


def _gguf_parser(wanted: frozenset[str], chunk_size: int) -> Parse:
    def parse(source: ByteSource) -> object:
        return read_gguf_header(source, wanted_arrays=wanted, chunk_size=chunk_size)

    return parse


class PrefixSource:
    """The first bytes of a larger file: ``size`` is the whole file's, reads past ``data`` fail.

    A real file's header is fuzzed against the real file's size (so an intact header parses and
    a declared length can be checked against 98 MB), while only its first MiB are in memory. A
    read past them fails as a truncated file does, so the source itself never allocates more
    than the prefix: whatever memory a parse takes beyond that, the parser took.
    """

    def __init__(self, name: str, data: bytes, size: int) -> None:
        self.name, self.size, self._data = name, size, data

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > min(self.size, len(self._data)):
            raise truncated(self.name, offset, length, min(self.size, len(self._data)))
        return self._data[offset : offset + length]


class SparseSource:
    """A file of ``size`` bytes holding ``pieces`` (offset → bytes) and zeros elsewhere, made up
    on each read: gigabytes that cost nothing until a parser asks for them."""

    def __init__(self, name: str, pieces: dict[int, bytes], size: int) -> None:
        self.name, self.size = name, size
        self._starts = sorted(pieces)
        self._pieces = pieces

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise truncated(self.name, offset, length, self.size)
        window = bytearray(length)
        index = max(bisect.bisect_right(self._starts, offset) - 1, 0)
        while index < len(self._starts) and self._starts[index] < offset + length:
            start = self._starts[index]
            piece = self._pieces[start]
            first, last = max(start, offset), min(start + len(piece), offset + length)
            if first < last:
                window[first - offset : last - offset] = piece[first - start : last - start]
            index += 1
        return bytes(window)


def check_parse(parse: Parse, name: str, data: bytes, size: int | None = None) -> None:
    """``check_source`` on ``data``: the whole file, or its beginning when ``size`` is given."""
    source = BytesSource(name, data) if size is None else PrefixSource(name, data, size)
    check_source(parse, source, ALLOCATION_BOUND)


def check_source(parse: Parse, source: ByteSource, bound: int) -> WorkerError | None:
    """A header or ``InvalidWeights`` naming the file (returned); peak allocation under
    ``bound``."""
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    error: WorkerError | None = None
    try:
        try:
            parse(source)
        except WorkerError as exc:  # anything else escapes and fails the example
            error = exc
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        if not already_tracing:
            tracemalloc.stop()
    if currently_in_test_context():  # seen with --hypothesis-show-statistics
        event("parsed" if error is None else "InvalidWeights")
    if error is not None:
        assert isinstance(error, InvalidWeights), repr(error)
        assert error.message.startswith(f"{source.name}: "), error.message
    assert peak <= bound, f"parse of a {source.size}-byte file allocated {peak} bytes at peak"
    return error


# ---- where the length and count fields are -----------------------------------------------------


@dataclass(frozen=True)
class Field:
    offset: int
    width: int
    """4 or 8: a little-endian u32 or u64."""


_GGUF_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


class _GGUFFieldWalker:
    """Walks a valid GGUF header and notes the offset of every length, count and type field.

    Of a long string array only the first and last few item lengths are noted; the vocabulary
    of a real file would otherwise be 49k fields of the same kind.
    """

    def __init__(self, data: bytes, items_kept: int = 4) -> None:
        self.data, self.position, self.items_kept = data, 24, items_kept
        self.fields = [Field(8, 8), Field(16, 8)]

    def _u(self, width: int, *, note: bool = True) -> int:
        if note:
            self.fields.append(Field(self.position, width))
        value: int = struct.unpack_from("<I" if width == 4 else "<Q", self.data, self.position)[0]
        self.position += width
        return value

    def _string(self, *, note: bool = True) -> None:
        length = self._u(8, note=note)  # read first: ``+=`` would load the old position
        self.position += length

    def _value(self, value_type: int) -> None:
        if value_type == _GGUF_STRING:
            self._string()
        elif value_type == _GGUF_ARRAY:
            item_type, count = self._u(4), self._u(8)
            for index in range(count):
                keep = index < self.items_kept or index >= count - self.items_kept
                if item_type == _GGUF_STRING:
                    self._string(note=keep)
                elif item_type == _GGUF_ARRAY:
                    self._value(_GGUF_ARRAY)
                else:
                    self.position += _GGUF_SCALAR_BYTES[item_type]
        else:
            self.position += _GGUF_SCALAR_BYTES[value_type]

    def walk(self) -> tuple[list[Field], int]:
        """The fields, and the end of the tensor infos (the header's end before padding)."""
        tensor_count, kv_count = struct.unpack_from("<QQ", self.data, 8)
        for _ in range(kv_count):
            self._string()
            self._value(self._u(4))
        for _ in range(tensor_count):
            self._string()
            for _ in range(self._u(4)):
                self._u(8)
            self._u(4)
            self._u(8)
        return self.fields, self.position


@dataclass(frozen=True)
class Seed:
    label: str
    data: bytes
    size: int
    """The file's size: ``len(data)`` for a whole file, more when ``data`` is its beginning."""
    header_end: int
    """Mutations land before this offset most of the time: the bytes the parser decodes."""
    fields: tuple[Field, ...]
    """Binary length/count fields (GGUF; the safetensors length prefix)."""
    numbers: tuple[tuple[int, int], ...] = ()
    """Spans of the integers in a safetensors JSON header (shapes, data offsets)."""


def _safetensors_seed(label: str, data: bytes, size: int | None = None) -> Seed:
    (length,) = struct.unpack_from("<Q", data)
    numbers = tuple(m.span() for m in re.finditer(rb"(?<=[\[,])\d+", data[: 8 + length]))
    return Seed(label, data, size or len(data), 8 + length, (Field(0, 8),), numbers)


def _gguf_seed(label: str, data: bytes, size: int | None = None) -> Seed:
    fields, end = _GGUFFieldWalker(data).walk()
    return Seed(label, data, size or len(data), end, tuple(fields))


def _write_gguf(path: Path) -> bytes:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("fuzz")
    writer.add_context_length(4096)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    writer.add_tags(["text-generation", "chat"])
    writer.add_array("test.ints", [1, 2, 3])
    writer.add_array("test.nested", [[1, 2], [3], ["a", "bc"]])
    writer.add_token_list(["<s>", "</s>", "hello", "wörld", "x"])
    writer.add_token_types([1, 1, 1, 1, 1])
    writer.add_uint64("test.u64", 2**64 - 1)
    writer.add_float32("test.f32", 0.5)
    writer.add_bool("test.yes", True)
    writer.add_tensor("token_embd.weight", np.ones((5, 32), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones((32,), dtype=np.float16))
    writer.add_tensor(
        "blk.0.attn_k.weight",
        np.zeros((2, 34), dtype=np.uint8),
        raw_dtype=gguf.GGMLQuantizationType.Q8_0,
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def _write_safetensors(path: Path) -> bytes:
    save_file(
        {
            "embed.weight": np.zeros((6, 4), dtype=np.float32),
            "norm.bias": np.zeros((4,), dtype=np.float16),
            "ids": np.zeros((1, 3), dtype=np.int64),
            "scale": np.zeros((), dtype=np.float64),
            "empty": np.zeros((0, 2), dtype=np.uint8),
        },
        str(path),
        metadata={"format": "pt"},
    )
    return path.read_bytes()


def _prefix(path: Path) -> tuple[bytes, int]:
    with path.open("rb") as handle:
        return handle.read(REAL_PREFIX_BYTES), path.stat().st_size


@dataclass(frozen=True)
class Seeds:
    safetensors: tuple[Seed, ...]
    gguf_small: Seed
    gguf_real: Seed


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, real_models: RealModels) -> Seeds:
    directory = tmp_path_factory.mktemp("fuzz")
    return Seeds(
        safetensors=(
            _safetensors_seed("writer", _write_safetensors(directory / "tiny.safetensors")),
            _safetensors_seed("MiniLM", *_prefix(real_models.minilm_dir / "model.safetensors")),
        ),
        gguf_small=_gguf_seed("writer", _write_gguf(directory / "tiny.gguf")),
        gguf_real=_gguf_seed("SmolLM2", *_prefix(real_models.smollm2_gguf)),
    )


def _whole_or_prefix(seed: Seed, name: str) -> ByteSource:
    if seed.size == len(seed.data):
        return BytesSource(name, seed.data)
    return PrefixSource(name, seed.data, seed.size)


def test_the_seeds_parse_and_the_walker_finds_their_fields(
    seeds: Seeds, real_models: RealModels
) -> None:
    small = read_gguf_header(_whole_or_prefix(seeds.gguf_small, "tiny.gguf"))
    real = read_gguf_header(_whole_or_prefix(seeds.gguf_real, "real.gguf"))
    assert real.tensors == read_gguf_header(FileByteSource(real_models.smollm2_gguf)).tensors
    for seed, header in ((seeds.gguf_small, small), (seeds.gguf_real, real)):
        assert -(-seed.header_end // header.alignment) * header.alignment == header.data_offset
        # the two counts; per key/value at least 2 fields; per tensor at least 5
        assert len(seed.fields) >= 2 + 2 * len(header.metadata) + 5 * len(header.tensors)
    for seed in seeds.safetensors:
        parsed = read_safetensors_header(_whole_or_prefix(seed, "model.safetensors"))
        assert seed.header_end == 8 + parsed.header_size
        # every tensor's shape and offsets are numbers the mutations can overwrite
        assert len(seed.numbers) == sum(len(t.shape) + 2 for t in parsed.tensors)
    minilm = read_safetensors_header(FileByteSource(real_models.minilm_dir / "model.safetensors"))
    assert parsed.tensors == minilm.tensors


# ---- mutations ---------------------------------------------------------------------------------


def huge_values(size: int, header_end: int) -> list[int]:
    """What a hostile length or count field declares: limits, overflows, the file size ± 1."""
    declared = {
        0,
        1,
        2**31 - 1,
        2**31,
        2**32 - 1,
        2**32,
        16 << 30,
        2**48,
        2**63 - 1,
        2**63,
        2**64 - 1,
        size - 1,
        size,
        size + 1,
        size - header_end,
        header_end - 8,
        header_end - 7,
        (100 << 20) + 1,
        (128 << 20) + 1,
    }
    return sorted(value for value in declared if value >= 0)


def _huge_texts(size: int) -> list[bytes]:
    """Replacements for an integer in a safetensors JSON header."""
    values = ["-1", "1e400", "0.5", "true", "null", '"8"', "[1]", "9" * 5000]
    values += [str(v) for v in (2**31, 2**48 + 1, 2**63 - 1, 2**64, size - 1, size + 1)]
    return [v.encode() for v in values]


def _overwrite(buffer: bytearray, field: Field, value: int) -> None:
    if field.offset + field.width <= len(buffer):
        fmt = "<I" if field.width == 4 else "<Q"
        struct.pack_into(fmt, buffer, field.offset, value & ((1 << (8 * field.width)) - 1))


_KINDS = ("flip", "truncate", "insert", "delete", "field", "field", "number", "byte", "size")


def mutate(seed: Seed, data: st.DataObject) -> tuple[bytes, int | None]:
    """One to three mutations of the seed, drawn by hypothesis: the bytes, and the file size
    when they are only the file's beginning (None: they are the whole file)."""
    buffer = bytearray(seed.data)
    size = None if seed.size == len(seed.data) else seed.size
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        kind = data.draw(st.sampled_from(_KINDS), label="kind")
        hot = max(1, min(seed.header_end, len(buffer)))
        anywhere = data.draw(st.integers(0, 9)) == 0
        position = data.draw(st.integers(0, max(len(buffer) if anywhere else hot, 1) - 1))
        if kind == "flip" and position < len(buffer):
            buffer[position] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "byte" and position < len(buffer):
            buffer[position] = data.draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, ord('"')]))
        elif kind == "truncate":
            del buffer[position:]
        elif kind == "insert":
            buffer[position:position] = data.draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del buffer[position : position + data.draw(st.integers(1, 64))]
        elif kind == "field":
            field = data.draw(st.sampled_from(seed.fields))
            values = huge_values(seed.size, seed.header_end)
            _overwrite(buffer, field, data.draw(st.sampled_from(values), label="value"))
        elif kind == "number" and seed.numbers:
            start, end = data.draw(st.sampled_from(seed.numbers))
            if end <= len(buffer):
                buffer[start:end] = data.draw(st.sampled_from(_huge_texts(seed.size)))
        elif kind == "size":
            choices = [seed.size - 1, seed.size + 1, seed.header_end, seed.header_end - 1]
            size = data.draw(st.sampled_from(choices), label="size")
    return bytes(buffer), size


# ---- random bytes ------------------------------------------------------------------------------


@_fuzz_settings(400)
@given(raw=st.binary(max_size=4096))
def test_random_bytes(raw: bytes) -> None:
    check_parse(_parse_safetensors, ST_NAME, raw)
    check_parse(_gguf_parser(WANTED, DEFAULT_CHUNK_SIZE), GGUF_NAME, raw)


_COUNTS = st.one_of(st.integers(0, 64), st.sampled_from(huge_values(4096, 24)))


@_fuzz_settings(400)
@given(
    version=st.sampled_from([2, 3, 1, 4, 0x03000000]),
    tensor_count=_COUNTS,
    kv_count=_COUNTS,
    body=st.binary(max_size=4096),
    chunk_size=st.sampled_from([8, 64, DEFAULT_CHUNK_SIZE]),
)
def test_random_bytes_behind_a_gguf_preamble(
    version: int, tensor_count: int, kv_count: int, body: bytes, chunk_size: int
) -> None:
    raw = b"GGUF" + struct.pack("<IQQ", version, tensor_count, kv_count) + body
    check_parse(_gguf_parser(WANTED, chunk_size), GGUF_NAME, raw)


# JSON values a hostile safetensors header might hold where integers are expected.
_JSON_NUMBERS = st.one_of(
    st.integers(-2, 64),
    st.sampled_from([2**31, 2**48, 2**48 + 1, 2**63 - 1, 2**64, -(2**63), 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
)
_TENSOR_ENTRIES = st.one_of(
    st.fixed_dictionaries(
        {
            "dtype": st.one_of(st.sampled_from(sorted(DTYPE_BITS)), st.text(max_size=6)),
            "shape": st.one_of(st.lists(_JSON_NUMBERS, max_size=20), _JSON_NUMBERS),
            "data_offsets": st.one_of(st.lists(_JSON_NUMBERS, max_size=3), _JSON_NUMBERS),
        }
    ),
    st.recursive(_JSON_NUMBERS, lambda inner: st.lists(inner, max_size=3), max_leaves=6),
)
_METADATA = st.one_of(
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=8), _JSON_NUMBERS, max_size=3),
    _JSON_NUMBERS,
)


@_fuzz_settings(400)
@given(
    tensors=st.dictionaries(st.text(max_size=10), _TENSOR_ENTRIES, max_size=6),
    metadata=st.one_of(st.none(), _METADATA),
    data_size=st.integers(0, 512),
    declared=st.one_of(st.none(), st.sampled_from(huge_values(1024, 8)), st.integers(0, 1024)),
)
def test_hostile_safetensors_documents(
    tensors: dict[str, object], metadata: object, data_size: int, declared: int | None
) -> None:
    header = dict(tensors) if metadata is None else {"__metadata__": metadata, **tensors}
    raw = safetensors_bytes(header, data_size, declared_length=declared)
    check_parse(_parse_safetensors, ST_NAME, raw)


@st.composite
def tiled_documents(draw: st.DrawFn) -> tuple[dict[str, object], int]:
    """A valid header (tensors tiling the data region, in any order) with one value made
    hostile half of the time; and the size of its data region."""
    entries: list[dict[str, object]] = []
    offset = 0
    for _ in range(draw(st.integers(0, 5))):
        dtype = draw(st.sampled_from(sorted(DTYPE_BITS)))
        shape = [*draw(st.lists(st.integers(0, 6), max_size=3)), 8]  # 8 elements: whole bytes
        size = math.prod(shape) * DTYPE_BITS[dtype] // 8
        entries.append({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]})
        offset += size
    hostile = draw(st.booleans())
    if entries and hostile:
        entry = draw(st.sampled_from(entries))
        key = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        value = entry[key]
        if isinstance(value, list):
            value[draw(st.integers(0, len(value) - 1))] = draw(_JSON_NUMBERS)
        else:
            entry[key] = draw(st.one_of(_JSON_NUMBERS, st.sampled_from(["F32 ", "f32", "F8"])))
    order = draw(st.permutations(range(len(entries))))
    return {f"t{index}": entries[index] for index in order}, offset


@_fuzz_settings(300)
@given(document=tiled_documents(), slack=st.sampled_from([0, 0, 0, 1, -1]))
def test_tiled_safetensors_documents(document: tuple[dict[str, object], int], slack: int) -> None:
    header, data_size = document
    raw = safetensors_bytes(header, max(data_size + slack, 0))
    check_parse(_parse_safetensors, ST_NAME, raw)


# ---- mutated seeds -----------------------------------------------------------------------------


@_fuzz_settings(400)
@given(data=st.data())
def test_mutated_safetensors(seeds: Seeds, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds.safetensors), label="seed")
    check_parse(_parse_safetensors, ST_NAME, *mutate(seed, data))


@_fuzz_settings(400)
@given(data=st.data())
def test_mutated_small_gguf(seeds: Seeds, data: st.DataObject) -> None:
    wanted = data.draw(st.sampled_from([WANTED, frozenset()]), label="wanted")
    chunk_size = data.draw(st.sampled_from([16, 256, DEFAULT_CHUNK_SIZE]), label="chunk")
    check_parse(_gguf_parser(wanted, chunk_size), GGUF_NAME, *mutate(seeds.gguf_small, data))


@_fuzz_settings(40)
@given(data=st.data())
def test_mutated_real_gguf(seeds: Seeds, data: st.DataObject) -> None:
    # Each example walks up to the 1.8 MB header under tracemalloc (~0.3 s): few, but each one
    # of a kind: mostly field overwrites, which reach the vocabulary, merges and tensor infos.
    parse = _gguf_parser(WANTED, DEFAULT_CHUNK_SIZE)
    check_parse(parse, GGUF_NAME, *mutate(seeds.gguf_real, data))


# ---- gigabytes declared and (sparsely) there ---------------------------------------------------


@st.composite
def big_declarations(draw: st.DrawFn) -> dict[int, bytes]:
    """A GGUF header whose key/values declare big strings (each within its own limit) again
    and again, laid out in a sparse file: the strings' bytes are its zeros."""
    count = draw(st.integers(1, 40), label="key/values")
    kind = draw(st.sampled_from(["string", "wanted array", "skipped array"]), label="kind")
    length = draw(
        st.sampled_from([MAX_ARRAY_ITEM_BYTES, MAX_STRING_BYTES - 1, MAX_STRING_BYTES]),
        label="declared length",
    )
    if kind != "string":
        length = min(length, MAX_ARRAY_ITEM_BYTES)
    items = draw(st.integers(1, 4096), label="array items") if kind != "string" else 1
    pieces = {0: b"GGUF" + struct.pack("<IQQ", 3, 0, count)}
    offset = len(pieces[0])
    for index in range(count):
        # general.tags is decoded and kept (up to 4096 items); other arrays are skipped
        key = "general.tags" if kind == "wanted array" and index == 0 else f"test.big.{index}"
        head = struct.pack("<Q", len(key)) + key.encode()
        if kind == "string":
            head += struct.pack("<IQ", _GGUF_STRING, length)
        else:
            head += struct.pack("<IIQ", _GGUF_ARRAY, _GGUF_STRING, items)
        pieces[offset] = head
        offset += len(head)
        for _ in range(items):  # item lengths in place; their bytes are the file's zeros
            if kind != "string":
                pieces[offset] = struct.pack("<Q", length)
                offset += 8
            offset += length
        if offset > SPARSE_FILE_BYTES:
            break
    return pieces


@_fuzz_settings(25)
@given(pieces=big_declarations())
def test_big_declared_strings_in_a_sparse_file(pieces: dict[int, bytes]) -> None:
    source = SparseSource(GGUF_NAME, pieces, SPARSE_FILE_BYTES)
    parse = _gguf_parser(WANTED, DEFAULT_CHUNK_SIZE)
    check_source(parse, source, SPARSE_ALLOCATION_BOUND)


# ---- every field of the small seeds, every huge value ------------------------------------------


def _field_overwrites(seed: Seed) -> Iterator[bytes]:
    for field in seed.fields:
        for value in huge_values(len(seed.data), seed.header_end):
            buffer = bytearray(seed.data)
            _overwrite(buffer, field, value)
            yield bytes(buffer)


def test_every_gguf_field_declaring_huge_values(seeds: Seeds) -> None:
    parse = _gguf_parser(WANTED, DEFAULT_CHUNK_SIZE)
    for mutated in _field_overwrites(seeds.gguf_small):
        check_parse(parse, GGUF_NAME, mutated)


def test_every_safetensors_length_and_number_declaring_huge_values(seeds: Seeds) -> None:
    seed = seeds.safetensors[0]
    for mutated in _field_overwrites(seed):
        check_parse(_parse_safetensors, ST_NAME, mutated)
    for start, end in seed.numbers:
        for text in _huge_texts(len(seed.data)):
            check_parse(_parse_safetensors, ST_NAME, seed.data[:start] + text + seed.data[end:])


# ---- work and memory bounded across the files of one model -------------------------------------


def _sparse_gguf(kvs: list[tuple[bytes, int]]) -> SparseSource:
    """Key/values, each followed by the zeros its counts declare (empty u8 arrays or empty
    strings: both are encoded as zeros), in a sparse file."""
    pieces = {0: b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))}
    offset = len(pieces[0])
    for head, zeros in kvs:
        pieces[offset] = head
        offset += len(head) + zeros
    return SparseSource(GGUF_NAME, pieces, offset + 64)


def _gguf_key(key: str, value: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key.encode() + value


def test_ten_million_nested_empty_arrays_fail_at_once() -> None:
    """The issue's case: 10 M empty arrays in one array took 14 to 29 s to walk."""
    count = 10_000_000
    nested = _gguf_key("x.nested", struct.pack("<IIQ", _GGUF_ARRAY, _GGUF_ARRAY, count))
    with pytest.raises(InvalidWeights) as caught:
        check_error(_gguf_parser(WANTED, DEFAULT_CHUNK_SIZE), _sparse_gguf([(nested, count * 12)]))
    assert caught.value.message == (
        f"{GGUF_NAME}: 10000000 nested arrays exceed the limit of {MAX_NESTED_ARRAYS} for one "
        "model; real models have far fewer"
    )


SMALL_BUDGET = 5000


@st.composite
def budget_breakers(draw: st.DrawFn) -> tuple[list[SparseSource], str]:
    """Splits of one model whose arrays together go past a budget, each file within its caps."""
    kind = draw(st.sampled_from(["nested", "strings"]), label="kind")
    files = draw(st.integers(1, 4), label="files")
    limit = SMALL_BUDGET
    total = draw(st.integers(limit + 1, 2 * limit), label="items in all")
    per_file = -(-total // files)
    sources = []
    for _ in range(files):
        keys = draw(st.integers(1, 8), label="keys per file")
        per_key = -(-per_file // keys)
        item_type = _GGUF_ARRAY if kind == "nested" else _GGUF_STRING
        head = struct.pack("<IIQ", _GGUF_ARRAY, item_type, per_key)
        zeros = per_key * (12 if kind == "nested" else 8)
        sources.append(_sparse_gguf([(_gguf_key(f"x.{k}", head), zeros) for k in range(keys)]))
    return sources, "nested arrays" if kind == "nested" else "string array items"


@_fuzz_settings(30)
@given(case=budget_breakers())
def test_budgets_hold_across_the_splits_of_a_model(case: tuple[list[SparseSource], str]) -> None:
    sources, what = case
    # Small budgets, so each example walks thousands of items, not millions; the real limits
    # are the same code with other numbers (and the 10 M case above).
    budgets = GGUFBudgets(
        strings=Budget("string array items", SMALL_BUDGET),
        nested=Budget("nested arrays", SMALL_BUDGET),
    )

    def parse_all() -> None:
        for source in sources:
            check_error(lambda s: read_gguf_header(s, budgets=budgets), source)

    with pytest.raises(InvalidWeights) as caught:
        parse_all()
    assert re.fullmatch(
        rf"{re.escape(GGUF_NAME)}: \d+ {what}( \(and \d+ in the files before it\))? exceed the "
        r"limit of \d+ for one model; real models have far fewer",
        caught.value.message,
    )


def test_a_safetensors_header_of_1_3_million_tensors_fails_before_decoding() -> None:
    """The issue's case: three such shards took 56 s and 2.1 GiB of memory."""
    entry = '{"dtype":"F16","shape":[0],"data_offsets":[0,0]}'
    raw = ("{" + ",".join(f'"t.{i:07d}":{entry}' for i in range(1_300_000)) + "}").encode()
    source = BytesSource(ST_NAME, struct.pack("<Q", len(raw)) + raw)
    del raw
    with pytest.raises(InvalidWeights) as caught:
        # The header's bytes are read (80 MB); nothing is built from them.
        check_error(_parse_safetensors, source, bound=source.size + ALLOCATION_BOUND)
    assert caught.value.message == (
        f"{ST_NAME}: 1300000 tensors exceed the limit of {ST_MAX_TENSORS} for one model; real "
        "models have far fewer"
    )


def check_error(parse: Parse, source: ByteSource, bound: int = ALLOCATION_BOUND) -> None:
    """``check_source``, raising the error it saw (for ``pytest.raises``)."""
    error = check_source(parse, source, bound)
    if error is not None:
        raise error
