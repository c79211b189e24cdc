"""Bounds on every value inspection takes from a model's files before it is published.

``status.resolved`` is built from bytes anyone can write (``config.json``, GGUF metadata, Hub
tags), then pushed into the artifact and reported to the controller, which refuses a result
over 64 KiB and validates it against the API (``contextWindowTokens >= 1``…). A value outside
these bounds is therefore treated as unknown (the field is left out, so the controller reports
``MetadataPartial``) and a note says why: never truncated (a cut name is a different name), and
never a crash after the weights were pushed.

- integers: ``contextWindowTokens`` in [1, 2**31], ``parameterCount`` in [1, 2**63 - 1] (the
  API's ``int64``);
- names (architecture, family, model type, quantization label, Diffusers pipeline class): 1 to
  128 characters of ``[A-Za-z0-9._+-]``, starting with a letter or digit — every real name
  (``LlamaForCausalLM``, ``xlm-roberta``, ``m2m_100``, ``qwen2vl``, ``COMPRESSED-TENSORS-4bit``,
  ``Q4_K_M``) fits;
- provider tasks and features (Hub pipeline tag and tags, Ollama capabilities): each 1 to 128
  characters (the API's rule), at most ``MAX_CAPABILITY_NAMES`` of them and
  ``MAX_CAPABILITY_BYTES`` of JSON in all; the rest are dropped, in order, with a note.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

MAX_CONTEXT_LENGTH = 1 << 31
MAX_PARAMETER_COUNT = (1 << 63) - 1
MAX_NAME_LENGTH = 128
MAX_CAPABILITY_NAME_LENGTH = 128
MAX_CAPABILITY_NAMES = 256
MAX_CAPABILITY_BYTES = 16 << 10
"""JSON bytes of tasks and features together: with the other fields the result stays far below
the controller's 64 KiB (``controller/workerpod.py`` ``MAX_REPORT_BYTES``)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def bounded_count(value: int | None, what: str, upper: int, notes: list[str]) -> int | None:
    """``value`` when it lies in [1, upper]; else None, with a note."""
    if value is None or 1 <= value <= upper:
        return value
    notes.append(f"{what} {value} is outside [1, {upper}]: treated as unknown")
    return None


def bounded_name(value: str | None, what: str, notes: list[str]) -> str | None:
    """``value`` when it is a plausible name (see the module docstring); else None, with a note."""
    if value is None:
        return None
    if len(value) <= MAX_NAME_LENGTH and _NAME.fullmatch(value):
        return value
    shown = json.dumps(value[:40]) + ("…" if len(value) > 40 else "")
    notes.append(
        f"{what} {shown} ({len(value)} characters) is not a name of at most {MAX_NAME_LENGTH} "
        "characters of [A-Za-z0-9._+-]: treated as unknown"
    )
    return None


def bounded_capability_names(values: Iterable[str], what: str, notes: list[str]) -> list[str]:
    """The values the API accepts, in order, within the count and size budgets."""
    kept: list[str] = []
    dropped, budget = 0, MAX_CAPABILITY_BYTES
    for value in values:
        cost = len(json.dumps(value)) + 1
        fits = 1 <= len(value) <= MAX_CAPABILITY_NAME_LENGTH
        if fits and len(kept) < MAX_CAPABILITY_NAMES and cost <= budget:
            kept.append(value)
            budget -= cost
        else:
            dropped += 1
    if dropped:
        notes.append(
            f"{dropped} {what} dropped: empty, longer than {MAX_CAPABILITY_NAME_LENGTH} "
            f"characters, or past {MAX_CAPABILITY_NAMES} names / "
            f"{MAX_CAPABILITY_BYTES} bytes"
        )
    return kept
