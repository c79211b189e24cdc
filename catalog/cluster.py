"""The server's view of its own cluster, through the controller's Kubernetes facade and the
shared registry client: the published ClusterModels, the Secrets it reads, the manifests and
blobs it relays to grant holders.

The listing is kept for ``ttl`` seconds: a busy catalog does not list ClusterModels once per
request. Manifests are cached by (repository, digest) — content-addressed, they never change —
so checking that a blob belongs to a grant's manifest costs one registry request per grant, not
one per blob.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable, Iterator

from catalog.listing import Published, published
from controller.kube import CLUSTER_MODELS, SECRETS, KubeApi
from controller.naming import ObjectKey, repository
from oci.digest import is_digest
from oci.manifest import Manifest
from oci.manifest_cache import ManifestCache
from oci.registry import RegistryClient

MAX_CACHED_MANIFESTS = 256
BLOB_PIECE_BYTES = 1 << 20


class SecretMissing(LookupError):  # noqa: N818 - the configuration names a Secret that is not there
    pass


class Models:
    """The published entries, listed with the publish label selector."""

    def __init__(
        self,
        kube: KubeApi,
        selector: str,
        prefix: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube, self._selector, self._prefix = kube, selector, prefix
        self._ttl, self._clock = ttl, clock
        self._lock = threading.Lock()
        self._items: list[Published] = []
        self._listed_at: float | None = None

    def items(self) -> list[Published]:
        with self._lock:
            now = self._clock()
            if self._listed_at is None or now - self._listed_at >= self._ttl:
                objects, _ = self._kube.list(CLUSTER_MODELS, label_selector=self._selector)
                self._items = [p for o in objects if (p := self._entry(o)) is not None]
                self._listed_at = now
            return self._items

    def _entry(self, obj: dict[str, object]) -> Published | None:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            return None
        key = ObjectKey("ClusterModel", "", str(meta.get("name", "")))
        return published(obj, repository(self._prefix, key, str(meta.get("uid", ""))))


def secret_value(kube: KubeApi, namespace: str, name: str, key: str) -> bytes:
    """One key of a Secret, decoded; ``SecretMissing`` naming what is absent (never the value)."""
    secret = kube.get(SECRETS, name, namespace)
    encoded = ((secret or {}).get("data") or {}).get(key)
    if secret is None or not isinstance(encoded, str):
        raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r}")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SecretMissing(f"Secret {namespace}/{name} key {key!r} is not base64") from error


class Upstream:
    """This cluster's registry, read-only, with the server's own credentials."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._manifests = ManifestCache(client, MAX_CACHED_MANIFESTS)

    def manifest(self, repo: str, digest: str) -> Manifest:
        return self._manifests.get(repo, digest)

    def blobs_of(self, repo: str, digest: str) -> frozenset[str]:
        """The digests the manifest lists (config and layers): what a grant for it opens."""
        document = self.manifest(repo, digest).document(f"manifest {digest} in {repo}")
        described = [document.get("config"), *(document.get("layers") or [])]
        found = (d.get("digest") for d in described if isinstance(d, dict))
        return frozenset(d for d in found if isinstance(d, str) and is_digest(d))

    def blob_size(self, repo: str, digest: str) -> int | None:
        return self.client.blob_size(repo, digest)

    def blob_chunks(self, repo: str, digest: str, offset: int) -> Iterator[bytes]:
        return self.client.blob_chunks(repo, digest, offset, chunk_size=BLOB_PIECE_BYTES)
