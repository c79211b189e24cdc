"""Manifests as fetched: the bytes, their media type and digest, and a bounded JSON parse.

A manifest is small JSON; the distribution registry itself refuses more than 4 MiB, so a larger
answer is refused unread. Its nesting depth is measured with a cheap scan before ``json.loads``
sees it (a 5,000-deep document would otherwise end in ``RecursionError``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from oci.errors import BadResponse

MAX_MANIFEST_BYTES = 4 << 20
MAX_JSON_DEPTH = 32
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKET_STEP)


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str

    def document(self, where: str) -> dict[str, Any]:
        """The manifest as a JSON object, parsed within the bounds (``BadResponse`` naming
        ``where`` otherwise)."""
        document = parse_bounded_json(self.data, where, "manifest")
        if not isinstance(document, dict):
            raise BadResponse(f"{where}: the manifest is not a JSON object")
        return document


def json_depth(data: bytes) -> int:
    """The deepest nesting of ``[``/``{`` outside strings, in linear C-speed passes: escaped
    backslashes and quotes are dropped, then every other ``"``-separated piece is outside a
    string. Exact for valid JSON; for invalid JSON ``json.loads`` fails anyway."""
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(_BRACKET_STEP[b] for b in brackets), default=0)


def parse_bounded_json(data: bytes, where: str, what: str) -> Any:
    """``data`` as JSON once its size and nesting depth are known to be sane."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BadResponse(f"{where}: the {what} is larger than {MAX_MANIFEST_BYTES:,} bytes")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise BadResponse(f"{where}: the {what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise BadResponse(f"{where}: the {what} is not JSON: {error}") from None
