"""The manifest cache: one fetch per (repository, digest), least recently used out first."""

from __future__ import annotations

from oci.manifest import Manifest
from oci.manifest_cache import OCI_MANIFEST, ManifestCache


class _Registry:
    def __init__(self) -> None:
        self.fetched: list[tuple[str, str, tuple[str, ...]]] = []

    def get_manifest(self, repository: str, reference: str, accept: tuple[str, ...]) -> Manifest:
        self.fetched.append((repository, reference, accept))
        return Manifest(f"{repository}@{reference}".encode(), accept[0], reference)


def test_a_manifest_is_fetched_once_per_repository_and_digest() -> None:
    registry = _Registry()
    cache = ManifestCache(registry, capacity=4)

    first = cache.get("a/m", "sha256:1")
    again = cache.get("a/m", "sha256:1")
    other = cache.get("b/m", "sha256:1")

    assert again is first
    assert other.data == b"b/m@sha256:1"
    assert registry.fetched == [
        ("a/m", "sha256:1", (OCI_MANIFEST,)),
        ("b/m", "sha256:1", (OCI_MANIFEST,)),
    ]


def test_the_least_recently_used_goes_first() -> None:
    registry = _Registry()
    cache = ManifestCache(registry, capacity=2, media_types=("x/y",))
    cache.get("r", "sha256:1")
    cache.get("r", "sha256:2")
    cache.get("r", "sha256:1")  # now the most recent: sha256:2 goes when a third comes
    cache.get("r", "sha256:3")
    registry.fetched.clear()

    cache.get("r", "sha256:1")
    cache.get("r", "sha256:2")

    assert registry.fetched == [("r", "sha256:2", ("x/y",))]
