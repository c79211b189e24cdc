"""The last good catalog of every ModelCatalogSource, in memory, and the resolution of a
``spec.source.catalog`` reference against them.

The status of a source carries no inventory (docs/catalog.md): the entries live here, put by
the source's refresh (``catalog_reconciler``) and read by the import of catalog Models. After a
restart the store is empty until each source is refreshed again; until then its Models wait
with ``CatalogSourceNotReady``. A source whose last refresh failed keeps its entries but is not
Ready: nothing resolves against it (a grant would need the same server).

Resolution (``resolve``) returns one typed outcome, each naming the Model's condition reason:

    NotReady           the named source, or no source at all, is Ready   CatalogSourceNotReady
    Ambiguous          no sourceName and several sources are Ready       CatalogSourceAmbiguous
    EntryNotFound      no active entry of that name (and version)        CatalogEntryNotFound
    VersionAmbiguous   no version and several active versions            CatalogVersionAmbiguous
    Entry              exactly one active entry: the one to import

Thread-safe: reconciles of different keys run at once; ``on_change`` is called outside the
lock with the source's name after every change, to wake the Models that wait on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar

from api.catalog_protocol import CatalogEntry


@dataclass(frozen=True)
class CachedCatalog:
    source: str
    revision: str
    entries: tuple[CatalogEntry, ...]
    fetched_at: datetime
    """When these entries were received (a 304 leaves it as it was)."""
    ready: bool
    """The source's last refresh succeeded."""


@dataclass(frozen=True)
class NotReady:
    reason: ClassVar[str] = "CatalogSourceNotReady"
    source: str | None
    """The named source; ``None`` when no sourceName was given and no source is Ready."""

    @property
    def message(self) -> str:
        if self.source is None:
            return "no ModelCatalogSource is Ready"
        return f"ModelCatalogSource {self.source} is not Ready"


@dataclass(frozen=True)
class Ambiguous:
    reason: ClassVar[str] = "CatalogSourceAmbiguous"
    sources: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"{len(self.sources)} ModelCatalogSources are Ready "
            f"({', '.join(self.sources)}); set spec.source.catalog.sourceName"
        )


@dataclass(frozen=True)
class EntryNotFound:
    reason: ClassVar[str] = "CatalogEntryNotFound"
    source: str
    revision: str
    name: str
    version: str | None

    @property
    def message(self) -> str:
        what = self.name if self.version is None else f"{self.name} version {self.version}"
        return (
            f"ModelCatalogSource {self.source} (revision {self.revision}) has no active entry "
            f"{what}; rechecked on every refresh"
        )


@dataclass(frozen=True)
class VersionAmbiguous:
    reason: ClassVar[str] = "CatalogVersionAmbiguous"
    source: str
    name: str
    versions: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"ModelCatalogSource {self.source} has {len(self.versions)} active versions of "
            f"{self.name} ({', '.join(self.versions)}); set spec.source.catalog.version"
        )


@dataclass(frozen=True)
class Entry:
    source: str
    revision: str
    entry: CatalogEntry


Resolution = NotReady | Ambiguous | EntryNotFound | VersionAmbiguous | Entry


class CatalogStore:
    def __init__(self, on_change: Callable[[str], None] = lambda source: None) -> None:
        self._lock = threading.Lock()
        self._catalogs: dict[str, CachedCatalog] = {}
        self._on_change = on_change

    # ---- writes (the source's refresh) ---------------------------------------------------------

    def put(
        self, source: str, revision: str, entries: tuple[CatalogEntry, ...], at: datetime
    ) -> None:
        """A successful refresh with a body: the entries replace the source's."""
        with self._lock:
            self._catalogs[source] = CachedCatalog(source, revision, entries, at, ready=True)
        self._on_change(source)

    def mark_ready(self, source: str) -> bool:
        """A 304: the entries held are current. ``False`` when none are held (after a restart
        the refresh must fetch the body: it sends no If-None-Match then)."""
        return self._set_ready(source, ready=True)

    def mark_failed(self, source: str) -> None:
        """A failed refresh: the entries stay (last good), the source is not Ready."""
        self._set_ready(source, ready=False)

    def remove(self, source: str) -> None:
        with self._lock:
            gone = self._catalogs.pop(source, None)
        if gone is not None:
            self._on_change(source)

    def _set_ready(self, source: str, *, ready: bool) -> bool:
        with self._lock:
            held = self._catalogs.get(source)
            if held is None:
                return False
            changed = held.ready != ready
            self._catalogs[source] = replace(held, ready=ready)
        if changed:
            self._on_change(source)
        return True

    # ---- reads ---------------------------------------------------------------------------------

    def get(self, source: str) -> CachedCatalog | None:
        with self._lock:
            return self._catalogs.get(source)

    def ready_sources(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(n for n, c in self._catalogs.items() if c.ready))

    def resolve(self, source: str | None, name: str, version: str | None) -> Resolution:
        """The entry ``spec.source.catalog`` names, or why there is none (module doc). An
        inactive entry resolves to nothing, even when its version is named."""
        if source is None:
            ready = self.ready_sources()
            if not ready:
                return NotReady(None)
            if len(ready) > 1:
                return Ambiguous(ready)
            source = ready[0]
        held = self.get(source)
        if held is None or not held.ready:
            return NotReady(source)
        found = [
            e
            for e in held.entries
            if e.active and e.name == name and (version is None or e.version == version)
        ]
        if not found:
            return EntryNotFound(source, held.revision, name, version)
        if len(found) > 1:  # only without a version: (name, version) is unique
            return VersionAmbiguous(source, name, tuple(sorted(e.version for e in found)))
        return Entry(source, held.revision, found[0])
