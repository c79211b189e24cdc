"""What the catalog publishes, decided from ClusterModel objects: pure, no I/O.

A ClusterModel is published when it carries the publish label (the server lists with the label
selector), is Ready and names its artifact's digest. The entry's name is the object's name, its
version the ``ai.deckhouse.io/catalog-version`` annotation (``"1"`` without it). The revision
is the first 16 hex of sha256 over the sorted ``(name, version, digest)`` list: any change of
what a client could import changes it, and nothing else does.

Page tokens are opaque to clients: base64url of ``{"r": revision, "o": offset}``. A token of
another revision is refused (``RevisionChanged``): a listing never mixes two catalogs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from api.catalog_protocol import (
    ANNOTATION_CATALOG_VERSION,
    DEFAULT_ENTRY_VERSION,
    MAX_PAGE_TOKEN_LENGTH,
    CatalogEntry,
)
from api.model import ResolvedMetadata

REVISION_HEX = 16
MAX_VERSION_LENGTH = 128


class BadPageToken(ValueError):  # noqa: N818 - answered as 400 BadRequest
    """The page token is not one this server issued."""


class RevisionChanged(ValueError):  # noqa: N818 - the protocol's error code
    """The page token belongs to an older revision: the client starts over."""


@dataclass(frozen=True)
class Published:
    """One entry before the server's public host is known (it prefixes ``repository``)."""

    name: str
    version: str
    repository: str
    """The path in this cluster's registry (and on the server's read API)."""
    digest: str
    size_bytes: int
    resolved: ResolvedMetadata

    def entry(self, public_host: str) -> CatalogEntry:
        return CatalogEntry(
            name=self.name,
            version=self.version,
            active=True,
            repository=f"{public_host}/{self.repository}",
            digest=self.digest,
            size_bytes=self.size_bytes,
            resolved=self.resolved,
        )


def published(obj: dict[str, Any], repository: str) -> Published | None:
    """The entry of a ClusterModel, or None when it is not Ready or its status is unusable."""
    meta, status = obj.get("metadata", {}), obj.get("status") or {}
    artifact = status.get("artifact") or {}
    version = (meta.get("annotations") or {}).get(ANNOTATION_CATALOG_VERSION, DEFAULT_ENTRY_VERSION)
    if status.get("phase") != "Ready" or not artifact.get("digest"):
        return None
    if not isinstance(version, str) or not 0 < len(version) <= MAX_VERSION_LENGTH:
        return None
    try:
        resolved = ResolvedMetadata.model_validate(status.get("resolved") or {})
        item = Published(
            str(meta["name"]), version, repository, str(artifact["digest"]),
            int(artifact.get("sizeBytes") or 0), resolved,
        )  # fmt: skip
        item.entry("host")  # validates the digest, the name and the repository
    except (ValidationError, ValueError, TypeError, KeyError):
        return None
    return item


def revision(items: Iterable[Published]) -> str:
    """First 16 hex of sha256 over the sorted (name, version, digest) triples."""
    triples = sorted((i.name, i.version, i.digest) for i in items)
    text = json.dumps(triples, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:REVISION_HEX]


def page_token(revision_: str, offset: int) -> str:
    data = json.dumps({"r": revision_, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def parse_page_token(token: str) -> tuple[str, int]:
    """``(revision, offset)``; ``BadPageToken`` for anything this server did not issue."""
    if len(token) > MAX_PAGE_TOKEN_LENGTH:
        raise BadPageToken("the page token is too long")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as error:
        raise BadPageToken("the page token is malformed") from error
    if not isinstance(data, dict) or set(data) != {"r", "o"}:
        raise BadPageToken("the page token is malformed")
    rev, offset = data["r"], data["o"]
    if not isinstance(rev, str) or type(offset) is not int or offset < 0:
        raise BadPageToken("the page token is malformed")
    return rev, offset


def page(
    items: Sequence[Published], size: int, token: str | None
) -> tuple[str, list[Published], str | None]:
    """``(revision, the page's items, the next page's token or None)``; items in (name,
    version) order so that offsets are stable within a revision."""
    current = revision(items)
    offset = 0
    if token is not None:
        rev, offset = parse_page_token(token)
        if rev != current:
            raise RevisionChanged("the catalog changed since the first page; start over")
        if offset > len(items):
            raise BadPageToken("the page token points past the catalog")
    ordered = sorted(items, key=lambda i: (i.name, i.version))
    chosen = ordered[offset : offset + size]
    following = offset + size
    return current, chosen, page_token(current, following) if following < len(items) else None
