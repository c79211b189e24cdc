"""The registry read API for grant holders: ``GET``/``HEAD /v2/<repository>/manifests/<digest>``
and ``/v2/<repository>/blobs/<digest>`` (``Range: bytes=<a>-[<b>]`` → 206), relayed from this
cluster's registry with the server's own credentials.

A grant opens its repository only, its manifest digest only, and the blobs that manifest lists;
anything else is 403 ``DENIED``. An expired or forged grant is 401 with
``WWW-Authenticate: Bearer error="invalid_token"``. Blobs stream through in pieces, never whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from catalog.answers import Refusal
from catalog.grants import GrantClaims
from oci.digest import is_digest

_PATH = re.compile(
    r"^/v2/(?P<repo>[a-z0-9][a-z0-9._/-]{0,254})/(?P<what>manifests|blobs)/(?P<digest>[^/]+)$"
)
_RANGE = re.compile(r"^bytes=(\d{1,19})-(\d{0,19})$")


@dataclass(frozen=True)
class Target:
    repository: str
    what: str
    """``manifests`` or ``blobs``."""
    digest: str


def parse_target(path: str) -> Target | None:
    found = _PATH.match(path)
    if found is None or not is_digest(found["digest"]):
        return None
    return Target(found["repo"], found["what"], found["digest"])


def check_scope(claims: GrantClaims, target: Target, blobs: frozenset[str] | None) -> None:
    """Refuses (403) what the grant does not open; ``blobs`` is its manifest's list."""
    if target.repository != claims.repository:
        raise Refusal(403, "DENIED", f"the grant does not open repository {target.repository}")
    if target.what == "manifests" and target.digest != claims.digest:
        raise Refusal(403, "DENIED", f"the grant opens manifest {claims.digest} only")
    if target.what == "blobs" and (blobs is None or target.digest not in blobs):
        raise Refusal(403, "DENIED", f"blob {target.digest} is not in the granted manifest")


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive of a single ``bytes=`` range, None for the whole blob; 416
    for a range the blob cannot satisfy."""
    if not header:
        return None
    found = _RANGE.match(header.strip())
    if found is None:
        return (
            None  # unsupported forms (several ranges, suffixes): the whole blob, as RFC 9110 allows
        )
    first = int(found[1])
    last = int(found[2]) if found[2] else size - 1
    if first >= size or last < first:
        raise Refusal(416, "RANGE_INVALID", f"range {header.strip()} outside {size} bytes")
    return first, min(last, size - 1)


def cut(chunks: Iterator[bytes], length: int) -> Iterator[bytes]:
    """The first ``length`` bytes of the chunks."""
    left = length
    for chunk in chunks:
        if left <= 0:
            return
        piece = chunk[:left]
        left -= len(piece)
        yield piece
