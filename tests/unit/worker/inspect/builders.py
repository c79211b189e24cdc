"""Byte-level builders of safetensors and GGUF files, for inputs no real writer would produce.

Valid files in the tests come from the real writers (``safetensors.numpy.save_file``,
``gguf.GGUFWriter``); these builders exist to craft hostile ones field by field.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = range(10)
UINT64, INT64, FLOAT64 = 10, 11, 12
_FORMATS = {
    UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
    FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d",
}  # fmt: skip


def safetensors_bytes(
    header: object, data_size: int, *, declared_length: int | None = None
) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(raw) if declared_length is None else declared_length
    return struct.pack("<Q", length) + raw + b"\0" * data_size


def gguf_string(value: str | bytes, *, declared_length: int | None = None) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    length = len(raw) if declared_length is None else declared_length
    return struct.pack("<Q", length) + raw


def gguf_value(value_type: int, value: object) -> bytes:
    if value_type == STRING:
        assert isinstance(value, str | bytes)
        return gguf_string(value)
    return struct.pack(_FORMATS[value_type], value)


def gguf_array(item_type: int, items: Sequence[object], *, count: int | None = None) -> bytes:
    body = b"".join(gguf_value(item_type, item) for item in items)
    n = len(items) if count is None else count
    return struct.pack("<IQ", item_type, n) + body


def gguf_kv(key: str, value_type: int, payload: bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", value_type) + payload


def gguf_tensor(name: str, dims: Sequence[int], ggml_type: int, offset: int) -> bytes:
    packed_dims = b"".join(struct.pack("<Q", d) for d in dims)
    return (
        gguf_string(name)
        + struct.pack("<I", len(dims))
        + packed_dims
        + struct.pack("<IQ", ggml_type, offset)
    )


def gguf_file(
    kvs: Sequence[bytes] = (),
    tensors: Sequence[bytes] = (),
    *,
    data_size: int = 0,
    magic: bytes = b"GGUF",
    version: int = 3,
    tensor_count: int | None = None,
    kv_count: int | None = None,
    alignment: int = 32,
) -> bytes:
    n_tensors = len(tensors) if tensor_count is None else tensor_count
    n_kv = len(kvs) if kv_count is None else kv_count
    head = magic + struct.pack("<IQQ", version, n_tensors, n_kv) + b"".join(kvs) + b"".join(tensors)
    padding = -len(head) % alignment
    return head + b"\0" * padding + b"\0" * data_size
