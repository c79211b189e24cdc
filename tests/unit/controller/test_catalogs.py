"""The in-memory catalogs and the resolution of ``spec.source.catalog`` against them."""

from __future__ import annotations

import datetime as dt

from api.catalog_protocol import CatalogEntry
from api.model import ResolvedMetadata
from controller.catalogs import (
    Ambiguous,
    CatalogStore,
    Entry,
    EntryNotFound,
    NotReady,
    VersionAmbiguous,
)

AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def entry(name: str = "llama", version: str = "1", active: bool = True) -> CatalogEntry:
    digest = "sha256:" + (name + version).encode().hex().ljust(64, "0")[:64]
    return CatalogEntry(
        name=name,
        version=version,
        active=active,
        repository=f"catalog.example:8443/ai-models/clustermodel/{name}",
        digest=digest,
        size_bytes=10,
        resolved=ResolvedMetadata(architecture="llama"),
    )


def store_with(*sources: tuple[str, tuple[CatalogEntry, ...]]) -> tuple[CatalogStore, list[str]]:
    changes: list[str] = []
    store = CatalogStore(on_change=changes.append)
    for name, entries in sources:
        store.put(name, f"rev-{name}", entries, AT)
    return store, changes


def test_the_only_ready_source_resolves_a_name_without_source_or_version() -> None:
    store, _ = store_with(("central", (entry("llama", "1"), entry("qwen", "2"))))
    assert store.resolve(None, "qwen", None) == Entry("central", "rev-central", entry("qwen", "2"))


def test_no_ready_source_is_not_ready_and_names_none() -> None:
    store, _ = store_with()
    found = store.resolve(None, "llama", None)
    assert found == NotReady(None)
    assert (found.reason, found.message) == (
        "CatalogSourceNotReady",
        "no ModelCatalogSource is Ready",
    )


def test_several_ready_sources_without_a_source_name_are_ambiguous() -> None:
    store, _ = store_with(("b", (entry(),)), ("a", (entry(),)))
    found = store.resolve(None, "llama", None)
    assert found == Ambiguous(("a", "b"))
    assert found.reason == "CatalogSourceAmbiguous"
    assert found.message == (
        "2 ModelCatalogSources are Ready (a, b); set spec.source.catalog.sourceName"
    )
    assert store.resolve("b", "llama", None) == Entry("b", "rev-b", entry())


def test_a_failed_source_keeps_its_entries_but_resolves_nothing() -> None:
    store, changes = store_with(("central", (entry(),)))
    store.mark_failed("central")
    held = store.get("central")
    assert held is not None
    assert (held.revision, held.entries, held.ready) == ("rev-central", (entry(),), False)
    assert store.resolve("central", "llama", None) == NotReady("central")
    assert store.resolve(None, "llama", None) == NotReady(None)
    assert store.mark_ready("central") is True
    assert store.resolve("central", "llama", None) == Entry("central", "rev-central", entry())
    assert changes == ["central", "central", "central"]  # put, failed, ready again


def test_a_304_without_held_entries_is_refused() -> None:
    store, changes = store_with()
    assert store.mark_ready("central") is False
    assert store.get("central") is None
    assert changes == []


def test_an_unknown_source_name_is_not_ready() -> None:
    store, _ = store_with(("central", (entry(),)))
    assert store.resolve("other", "llama", None) == NotReady("other")


def test_a_missing_name_or_version_is_entry_not_found_with_the_revision() -> None:
    store, _ = store_with(("central", (entry("llama", "1"),)))
    found = store.resolve("central", "llama", "2")
    assert found == EntryNotFound("central", "rev-central", "llama", "2")
    assert found.reason == "CatalogEntryNotFound"
    assert found.message == (
        "ModelCatalogSource central (revision rev-central) has no active entry llama version 2; "
        "rechecked on every refresh"
    )
    assert store.resolve("central", "qwen", None) == EntryNotFound(
        "central", "rev-central", "qwen", None
    )


def test_an_inactive_entry_resolves_to_nothing_even_by_version() -> None:
    store, _ = store_with(("central", (entry("llama", "1", active=False), entry("llama", "2"))))
    assert store.resolve("central", "llama", "1") == EntryNotFound(
        "central", "rev-central", "llama", "1"
    )
    assert store.resolve("central", "llama", None) == Entry(
        "central", "rev-central", entry("llama", "2")
    )


def test_several_active_versions_without_a_version_are_ambiguous() -> None:
    entries = (entry("llama", "2"), entry("llama", "1"), entry("llama", "3", active=False))
    store, _ = store_with(("central", entries))
    found = store.resolve("central", "llama", None)
    assert found == VersionAmbiguous("central", "llama", ("1", "2"))
    assert found.reason == "CatalogVersionAmbiguous"
    assert found.message == (
        "ModelCatalogSource central has 2 active versions of llama (1, 2); "
        "set spec.source.catalog.version"
    )
    assert store.resolve("central", "llama", "2") == Entry(
        "central", "rev-central", entry("llama", "2")
    )


def test_remove_forgets_the_source_and_reports_the_change_once() -> None:
    store, changes = store_with(("central", (entry(),)))
    store.remove("central")
    store.remove("central")
    assert store.get("central") is None
    assert store.ready_sources() == ()
    assert changes == ["central", "central"]  # put, remove


def test_a_new_body_replaces_the_entries_and_the_time() -> None:
    store, _ = store_with(("central", (entry("llama"),)))
    later = AT + dt.timedelta(minutes=10)
    store.put("central", "rev-2", (entry("qwen"),), later)
    held = store.get("central")
    assert held is not None
    assert (held.revision, held.entries, held.fetched_at, held.ready) == (
        "rev-2",
        (entry("qwen"),),
        later,
        True,
    )
