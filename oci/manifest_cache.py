"""Manifests read by digest, kept in memory: least recently used first out.

A manifest fetched by digest never changes (the client checks that its bytes hash to the
digest), so a reader that looks at the same manifests again and again (the delivery endpoint,
the catalog server) keeps them. They are keyed by **repository and digest**: a manifest proves
which blobs its repository holds, so one fetched for one repository never answers for another.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

from oci.manifest import Manifest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class ManifestReader(Protocol):
    """What the cache needs of ``oci.registry.RegistryClient``."""

    def get_manifest(
        self, repository: str, reference: str, accept: tuple[str, ...]
    ) -> Manifest: ...


class ManifestCache:
    """At most ``capacity`` manifests of ``client`` accepted as ``media_types``; thread-safe."""

    def __init__(
        self,
        client: ManifestReader,
        capacity: int,
        media_types: tuple[str, ...] = (OCI_MANIFEST,),
    ) -> None:
        self._client, self._capacity, self._media_types = client, capacity, media_types
        self._manifests: OrderedDict[tuple[str, str], Manifest] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, repo: str, digest: str) -> Manifest:
        key = (repo, digest)
        with self._lock:
            found = self._manifests.get(key)
            if found is not None:
                self._manifests.move_to_end(key)
                return found
        # Fetched outside the lock: one slow registry request holds up no other reader.
        fetched = self._client.get_manifest(repo, digest, self._media_types)
        with self._lock:
            self._manifests[key] = fetched
            while len(self._manifests) > self._capacity:
                self._manifests.popitem(last=False)
        return fetched
