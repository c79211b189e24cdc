"""The registry behind the delivery endpoint: the shared registry client (``oci``), read-only.

The credentials (a docker config JSON mounted from the registry auth Secret of the system
namespace) and the CA stay in the delivery pod; consuming pods never see them. A model's
repository is the controller's own naming (``controller.naming.repository``: it needs the
object's UID for names too long for the registry). Manifests are kept in memory, keyed by
**repository and digest** (``oci.manifest_cache``): a digest recorded for one model can never
unlock the blobs of another repository's manifest.
"""

from __future__ import annotations

from collections.abc import Iterator

from controller.naming import Kind, ObjectKey, repository
from oci.manifest import Manifest
from oci.manifest_cache import ManifestCache
from oci.registry import RegistryClient

MAX_CACHED_MANIFESTS = 512
BLOB_PIECE_BYTES = 256 << 10
"""Blobs are read from the registry in pieces the CPU cache holds while they are hashed,
written to the cache file and sent (as ``cache.CHUNK_SIZE``)."""


class Upstream:
    def __init__(self, client: RegistryClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._manifests = ManifestCache(client, MAX_CACHED_MANIFESTS)

    def repository(self, kind: Kind, namespace: str, name: str, uid: str) -> str:
        return repository(self.prefix, ObjectKey(kind, namespace, name), uid)

    def manifest(self, repo: str, digest: str) -> Manifest:
        """The manifest by digest (the client checks that the bytes hash to it)."""
        return self._manifests.get(repo, digest)

    def blob_chunks(self, repo: str, digest: str) -> Iterator[bytes]:
        return self.client.blob_chunks(repo, digest, chunk_size=BLOB_PIECE_BYTES)
