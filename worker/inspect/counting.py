"""Parameter counts of safetensors checkpoints, from a tally that outlives no header.

A header is reduced to a ``TensorTally`` as soon as it is read, and dropped: the tally keeps
only what the count needs (per tensor-name suffix class and dtype, the element sum and the gcd
of the element counts), a few dozen entries however many tensors the shards hold. So memory
stays at one shard's header, never every header of every shard at once.

Parameters are the original model's: a packed integer tensor holds ``container bits / bits``
values per element, and scales, zero points and group indices are not parameters (``PACKINGS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from worker.inspect.hfconfig import Quantization
from worker.inspect.safetensors import DTYPE_BITS, SafetensorsHeader


@dataclass(frozen=True)
class Packing:
    """How a quantization method stores weights in safetensors."""

    packed: tuple[str, ...]
    """Tensor-name suffixes of integer tensors that hold ``container bits / bits`` values each."""
    auxiliary: tuple[str, ...]
    """Tensor-name suffixes of scales, zero points and indices: not parameters."""


PACKINGS: dict[str, Packing] = {
    "gptq": Packing((".qweight",), (".qzeros", ".scales", ".g_idx")),
    "awq": Packing((".qweight",), (".qzeros", ".scales")),
    "compressed-tensors": Packing(
        (".weight_packed",),
        (
            ".weight_scale",
            ".weight_zero_point",
            ".weight_g_idx",
            ".weight_shape",
            ".weight_global_scale",
            ".input_scale",
            ".input_global_scale",
        ),
    ),
    "fp8": Packing((), (".weight_scale_inv", ".weight_scale", ".input_scale")),
    "fbgemm_fp8": Packing((), (".weight_scale", ".input_scale_ub")),
    "mxfp4": Packing(("_blocks",), ("_scales",)),
}
"""Quantization methods whose parameter count is exact; others leave parameterCount None."""

_SUFFIXES = tuple(
    sorted({s for p in PACKINGS.values() for s in (*p.packed, *p.auxiliary)} | {".qweight"})
)
_NONE: frozenset[str] = frozenset()


@dataclass
class _Group:
    elements: int = 0
    gcd: int = 0
    """gcd of the tensors' element counts: ``e * bits % q == 0`` for every tensor iff it holds
    for the gcd, so packing is checked without keeping the tensors."""


@dataclass
class TensorTally:
    """Element counts by (the known suffixes a tensor name ends with, dtype)."""

    groups: dict[tuple[frozenset[str], str], _Group] = field(default_factory=dict)

    def add(self, header: SafetensorsHeader) -> None:
        for tensor in header.tensors:
            name = tensor.name
            # One C-level test for the common case (no known suffix), the set only otherwise.
            suffixes = _NONE
            if name.endswith(_SUFFIXES):
                suffixes = frozenset(s for s in _SUFFIXES if name.endswith(s))
            group = self.groups.setdefault((suffixes, tensor.dtype), _Group())
            count = tensor.element_count
            group.elements += count
            group.gcd = math.gcd(group.gcd, count)


def parameter_count(
    tally: TensorTally, quantization: Quantization | None, notes: list[str]
) -> int | None:
    """The original model's parameters, or None with a note when they cannot be exact."""
    if quantization is None:
        if any(".qweight" in suffixes for suffixes, _ in tally.groups):
            notes.append("packed .qweight tensors without a quantization config: count unknown")
            return None
        return sum(group.elements for group in tally.groups.values())
    packing = PACKINGS.get(quantization.method)
    bits = quantization.bits
    if packing is None or (packing.packed and not bits):
        notes.append(f"parameter count unknown for quantization method {quantization.method!r}")
        return None
    total = 0
    for (suffixes, dtype), group in sorted(tally.groups.items(), key=_order):
        if suffixes & set(packing.auxiliary):
            continue
        if bits and suffixes & set(packing.packed):
            if group.gcd * DTYPE_BITS[dtype] % bits:
                packed = ", ".join(sorted(suffixes & set(packing.packed)))
                notes.append(f"{packed} tensors: {dtype} does not pack whole {bits}-bit values")
                return None
            total += group.elements * DTYPE_BITS[dtype] // bits
        else:
            total += group.elements
    return total


def _order(item: tuple[tuple[frozenset[str], str], _Group]) -> tuple[list[str], str]:
    (suffixes, dtype), _ = item
    return sorted(suffixes), dtype
