"""Content addresses: ``sha256:<64 lower-case hex>``, the only algorithm accepted.

Other algorithms are refused on input rather than half-supported.
"""

from __future__ import annotations

import hashlib
import re

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    return DIGEST_PATTERN.match(value) is not None


def hex_of(digest: str) -> str:
    """The hex part of a checked digest (it names blob files, so it must be checked first)."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.removeprefix("sha256:")
