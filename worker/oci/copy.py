"""Copy by digest: a ModelPack artifact from a remote registry into a target, unchanged.

The catalog import's engine. The remote manifest is fetched by digest and its sha256 checked
against the digest the catalog named before anything else is done; it must be a ModelPack
manifest within the bounds of ``manifest_reader``. Then the config and every layer move blob by
blob (stages ``transfer``, ``config``, ``manifest`` as in publishing): a blob the target already
has is neither read nor sent; the others stream from the remote straight into the target, hashed
on the way, so a remote that serves other bytes than the digest names stops the copy
(``CatalogDigestMismatch``) — the target's own check (the registry's ``PUT ?digest=``, the
layout's hash) stands behind it. Last, the very manifest bytes are stored under the target's
tag: the local digest is the remote digest. A failure before that point tags nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from oci.digest import is_digest, sha256_digest
from worker.errors import CatalogDigestMismatch, InvalidWeights
from worker.oci.content import ChunkOpener, DigestMismatch
from worker.oci.manifest_reader import parse_bounded_json, read_artifact_manifest
from worker.oci.modelpack import ARTIFACT_TYPE, MANIFEST_MEDIA_TYPE
from worker.oci.publish import ProgressSink, PublishedArtifact
from worker.oci.target import ArtifactTarget

CONFIG_NAME = "(config)"
"""The config blob's name in progress reports (layers go by their file path)."""


class RemoteArtifact(Protocol):
    """Where the artifact is read from (``worker.sources.catalog.CatalogRemote``)."""

    def manifest(self, digest: str) -> bytes:
        """The manifest's bytes as the remote serves them for ``digest``."""
        ...

    def blob_chunks(self, digest: str, offset: int) -> Iterable[bytes]:
        """The blob's bytes from ``offset``."""
        ...


@dataclass(frozen=True)
class Blob:
    name: str
    """A layer's file path, or ``CONFIG_NAME``."""
    digest: str
    size: int


@dataclass(frozen=True)
class CopiedArtifact:
    published: PublishedArtifact
    manifest: bytes
    copied: tuple[str, ...]
    """Digests of the blobs sent to the target."""
    skipped: tuple[str, ...]
    """Digests of the blobs the target already had."""


def copy_artifact(
    remote: RemoteArtifact,
    remote_digest: str,
    target: ArtifactTarget,
    *,
    progress: Callable[[int], ProgressSink],
    where: str,
) -> CopiedArtifact:
    """Copies the artifact ``remote_digest`` names; ``where`` names it in messages.
    ``progress`` gives the sink once the total (config and layers) is known."""
    data = remote.manifest(remote_digest)
    actual = sha256_digest(data)
    if actual != remote_digest:
        raise CatalogDigestMismatch(
            f"{where}: the remote manifest hashes to {actual}, not {remote_digest}; nothing was "
            "copied"
        )
    config, layers = manifest_blobs(data, where)
    size = config.size + sum(layer.size for layer in _unique(layers))
    sink = progress(size)
    sink.stage("transfer")
    copied: list[str] = []
    skipped: list[str] = []
    for blob in _unique(layers):
        _copy_blob(remote, target, blob, sink, copied, skipped, where)
    sink.stage("config")
    _copy_blob(remote, target, config, sink, copied, skipped, where)
    sink.stage("manifest")
    digest = target.put_manifest(data, MANIFEST_MEDIA_TYPE, target.tag)
    if digest != remote_digest:  # the target's answer, not ours: it must not re-encode
        raise CatalogDigestMismatch(f"{where}: the target stored the manifest as {digest}")
    size = config.size + sum(layer.size for layer in layers)  # as publishing counts it
    published = PublishedArtifact(target.pinned(digest), digest, ARTIFACT_TYPE, size)
    return CopiedArtifact(published, data, tuple(copied), tuple(skipped))


def manifest_blobs(data: bytes, where: str) -> tuple[Blob, tuple[Blob, ...]]:
    """The config and the layers of a ModelPack manifest (bounded and checked)."""
    layers = read_artifact_manifest(data, where)
    document: dict[str, Any] = parse_bounded_json(data, where, "manifest")
    config = document["config"]  # read_artifact_manifest checked it is a ModelPack config
    digest, size = config.get("digest"), config.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidWeights(f"{where}: the config digest {str(digest)[:80]!r} is not sha256")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 4 << 20:
        raise InvalidWeights(f"{where}: the config size {size!r} is out of bounds")
    return Blob(CONFIG_NAME, digest, size), tuple(
        Blob(layer.path, layer.digest, layer.size) for layer in layers
    )


def manifest_annotations(data: bytes, where: str) -> dict[str, str]:
    """The manifest's string annotations (others are ignored)."""
    document = parse_bounded_json(data, where, "manifest")
    found = document.get("annotations") if isinstance(document, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


def _unique(layers: tuple[Blob, ...]) -> list[Blob]:
    """One transfer per digest: two files with the same content are one blob."""
    seen: set[str] = set()
    unique = []
    for layer in layers:
        if layer.digest not in seen:
            seen.add(layer.digest)
            unique.append(layer)
    return unique


def _copy_blob(
    remote: RemoteArtifact,
    target: ArtifactTarget,
    blob: Blob,
    progress: ProgressSink,
    copied: list[str],
    skipped: list[str],
    where: str,
) -> None:
    progress.file_started(blob.name, blob.size)
    if target.has_blob(blob.digest, blob.size):
        skipped.append(blob.digest)
        progress.file_done(blob.name, True)
        return
    opener: ChunkOpener = lambda offset: verified(  # noqa: E731
        remote.blob_chunks(blob.digest, offset), blob.digest, offset
    )
    try:
        target.put_blob(opener, blob.size, blob.digest, lambda n: progress.advance(blob.name, n))
    except DigestMismatch as mismatch:
        raise CatalogDigestMismatch(
            f"{where}: {blob.name} ({blob.digest}): the remote served other bytes "
            f"({mismatch}); nothing was tagged"
        ) from None
    copied.append(blob.digest)
    progress.file_done(blob.name, False)


def verified(chunks: Iterable[bytes], digest: str, offset: int) -> Iterator[bytes]:
    """``chunks`` as they come, then ``DigestMismatch`` if the whole blob (read from offset 0)
    does not hash to ``digest``. A resumed read cannot hash the prefix it skips: the target's
    own check covers it."""
    hasher = hashlib.sha256() if offset == 0 else None
    for chunk in chunks:
        if hasher is not None:
            hasher.update(chunk)
        yield chunk
    if hasher is not None and f"sha256:{hasher.hexdigest()}" != digest:
        raise DigestMismatch(digest, f"sha256:{hasher.hexdigest()}")
