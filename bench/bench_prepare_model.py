"""Synthetic but valid safetensors models for ``bench_prepare.py``, and a Hub repository for them.

``generate_model(directory, total_bytes, shards, seed)`` writes a Hugging Face layout:
``model-0000i-of-0000N.safetensors`` shards (a correct safetensors header: 8-byte little-endian
length, JSON with dtype/shape/data_offsets of contiguous BF16 tensors named like a Llama
checkpoint, padded with spaces to 8 bytes, then the tensor data), ``model.safetensors.index.json``
(``total_size`` and ``weight_map``), ``config.json`` (``LlamaForCausalLM``) and
``generation_config.json``. Tensor data is an AES-256-CTR keystream (pseudo-random, incompressible,
~3 GB/s with AES-NI; ``os.urandom`` when ``cryptography`` is missing), written in 16 MiB pieces and
hashed while written, so no shard is ever held in memory and nothing is read back.

``PrehashedRepo`` is the Hub emulator's ``HubRepo`` for such a directory, taking the sha256 the
generator computed instead of re-reading gigabytes (``HubRepo`` hashes every file on creation).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.ground.hub_repo import HubRepo, RepoFile, repo_file

MIB = 1 << 20
PIECE = 16 * MIB
HIDDEN = 4096
ROW_BYTES = HIDDEN * 2  # one BF16 row of a [rows, 4096] matrix
MAX_ROWS = 8192  # at most 64 MiB per tensor
# A Llama decoder layer's matrices, in checkpoint order.
LAYER_TENSORS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


@dataclass(frozen=True)
class SyntheticModel:
    directory: Path
    files: dict[str, Path]
    """Path in the repository → file on disk."""
    sha256: dict[str, str]
    """Path → hex sha256, for the weight shards."""
    total_bytes: int
    """All files."""
    weight_bytes: int
    """The shards only (headers included)."""
    header_bytes: dict[str, int]
    """Path → size of the safetensors header (8-byte length + JSON), for the weight shards."""


def _keystream(seed: int) -> Callable[[int], bytes]:
    """Pseudo-random bytes, deterministic per seed."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:  # pragma: no cover - dev extras missing: slower but the same shape
        return os.urandom
    key = hashlib.sha256(f"bench-prepare-{seed}".encode()).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(PIECE)

    def take(count: int) -> bytes:
        return encryptor.update(zeros[:count] if count < PIECE else zeros)

    return take


class _TensorNames:
    """``model.embed_tokens.weight``, then layer after layer of Llama matrices."""

    def __init__(self) -> None:
        self.index = -1

    def next(self) -> str:
        self.index += 1
        if self.index == 0:
            return "model.embed_tokens.weight"
        layer, slot = divmod(self.index - 1, len(LAYER_TENSORS))
        return f"model.layers.{layer}.{LAYER_TENSORS[slot]}.weight"

    @property
    def layers(self) -> int:
        return max(1, (self.index - 1) // len(LAYER_TENSORS) + 1)


def _shard_tensors(names: _TensorNames, data_bytes: int) -> dict[str, dict[str, object]]:
    header: dict[str, dict[str, object]] = {}
    offset, rows_left = 0, data_bytes // ROW_BYTES
    while rows_left > 0:
        rows = min(MAX_ROWS, rows_left)
        end = offset + rows * ROW_BYTES
        header[names.next()] = {
            "dtype": "BF16",
            "shape": [rows, HIDDEN],
            "data_offsets": [offset, end],
        }
        offset, rows_left = end, rows_left - rows
    return header


def _header_blob(tensors: Mapping[str, object]) -> bytes:
    document = {"__metadata__": {"format": "pt"}, **tensors}
    raw = json.dumps(document, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(raw)) + raw


def _write_shard(path: Path, header: bytes, data_bytes: int, take: Callable[[int], bytes]) -> str:
    digest = hashlib.sha256(header)
    with path.open("wb") as handle:
        handle.write(header)
        left = data_bytes
        while left > 0:
            piece = take(min(PIECE, left))
            digest.update(piece)
            handle.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def _config(layers: int) -> dict[str, object]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": 11008,
        "num_hidden_layers": layers,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
        "vocab_size": 32000,
        "rms_norm_eps": 1e-5,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
    }


def generate_model(directory: Path, total_bytes: int, shards: int, seed: int) -> SyntheticModel:
    """Writes the model; the shards share ``total_bytes`` of tensor data (rounded to rows)."""
    directory.mkdir(parents=True, exist_ok=True)
    take = _keystream(seed)
    names = _TensorNames()
    per_shard = total_bytes // shards // ROW_BYTES * ROW_BYTES
    if per_shard == 0:
        raise ValueError(f"{total_bytes} bytes is too small for {shards} shards")
    files: dict[str, Path] = {}
    sha256: dict[str, str] = {}
    headers: dict[str, int] = {}
    weight_map: dict[str, str] = {}
    data_total = 0
    for number in range(1, shards + 1):
        name = f"model-{number:05d}-of-{shards:05d}.safetensors"
        tensors = _shard_tensors(names, per_shard)
        weight_map.update(dict.fromkeys(tensors, name))
        header = _header_blob(tensors)
        sha256[name] = _write_shard(directory / name, header, per_shard, take)
        files[name], headers[name] = directory / name, len(header)
        data_total += per_shard
    small = {
        "model.safetensors.index.json": {
            "metadata": {"total_size": data_total},
            "weight_map": weight_map,
        },
        "config.json": _config(names.layers),
        "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2, "max_length": 4096},
    }
    for name, document in small.items():
        (directory / name).write_text(json.dumps(document, indent=2) + "\n")
        files[name] = directory / name
    sizes = {name: path.stat().st_size for name, path in files.items()}
    return SyntheticModel(
        directory=directory,
        files=files,
        sha256=sha256,
        total_bytes=sum(sizes.values()),
        weight_bytes=sum(sizes[name] for name in sha256),
        header_bytes=headers,
    )


def _git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(f"blob {len(content)}\0".encode() + content).hexdigest()  # noqa: S324


class PrehashedRepo(HubRepo):
    """A ``HubRepo`` whose LFS files' sha256 are given rather than computed from the files."""

    def __init__(self, repo_id: str, model: SyntheticModel) -> None:
        self._known = dict(model.sha256)
        super().__init__(repo_id, dict(model.files))

    def __post_init__(self) -> None:
        entries: dict[str, RepoFile] = {}
        for path, source in sorted(self.files.items()):
            known = self._known.get(path)
            if known is None:
                entries[path] = repo_file(path, source)  # a small file: hashing is free
                continue
            draft = RepoFile(path, source, source.stat().st_size, known, "", lfs=True)
            entries[path] = RepoFile(
                path, source, draft.size, known, _git_blob_oid(draft.pointer), lfs=True
            )
        self.entries = entries
        listing = "".join(f"{e.path}\0{e.sha256}\n" for e in entries.values())
        self.commit = hashlib.sha1((self.repo_id + "\n" + listing).encode()).hexdigest()  # noqa: S324
