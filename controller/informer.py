"""List+watch informers: a local cache of one resource kept current by a watch.

One thread per informer: list (paged) → watch from the list's resourceVersion with bookmarks →
on a normal watch end, watch again from the last version seen; on ``410 Gone`` relist; on a
network or 5xx error back off (doubling up to a cap) and resume. Every change calls the
handler with the event type and the object; the handler only maps it to keys (it must not do
I/O). The cache answers reads of the reconcilers without API calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from controller.errors import ApiUnavailable, Gone, KubeError
from controller.kube import JSON, KubeClient, Resource

Handler = Callable[[str, JSON], None]
log = structlog.get_logger("informer")


def object_key(obj: JSON) -> str:
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace") or ""
    return f"{namespace}/{meta.get('name', '')}"


class Informer:
    def __init__(
        self,
        kube: KubeClient,
        resource: Resource,
        handler: Handler,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        stop: threading.Event | None = None,
        backoff_initial: float = 0.5,
        backoff_cap: float = 30.0,
        watch_timeout: int = 300,
    ) -> None:
        self._kube = kube
        self.resource = resource
        self._handler = handler
        self._namespace = namespace
        self._selector = label_selector
        self._stop = stop or threading.Event()
        self._backoff_initial = backoff_initial
        self._backoff_cap = backoff_cap
        self._watch_timeout = watch_timeout
        self._lock = threading.Lock()
        self._store: dict[str, JSON] = {}
        self.synced = threading.Event()
        self.relists = 0
        self._version: str | None = None

    # ---- reads --------------------------------------------------------------------------------

    def get(self, key: str) -> JSON | None:
        with self._lock:
            return self._store.get(key)

    def items(self) -> list[JSON]:
        with self._lock:
            return list(self._store.values())

    # ---- the loop -----------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.run, name=f"informer-{self.resource.plural}", daemon=True
        )
        thread.start()
        return thread

    def run(self) -> None:
        delay = self._backoff_initial
        self._version = None
        while not self._stop.is_set():
            try:
                if self._version is None:
                    self._version = self._relist()
                self._watch(self._version)
                delay = self._backoff_initial
            except Gone:
                log.info("watch expired, relisting", resource=self.resource.plural)
                self._version = None
            except (ApiUnavailable, KubeError) as error:
                log.warning(
                    "watch failed, backing off",
                    resource=self.resource.plural,
                    error=str(error),
                    delay=delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_cap)

    def _relist(self) -> str:
        items, version = self._kube.list(self.resource, self._namespace, self._selector)
        fresh = {object_key(obj): obj for obj in items}
        with self._lock:
            gone = [obj for key, obj in self._store.items() if key not in fresh]
            self._store = fresh
        self.relists += 1
        for obj in gone:
            self._handler("DELETED", obj)
        for obj in items:
            self._handler("ADDED", obj)
        self.synced.set()
        return version

    def _watch(self, version: str) -> None:
        """Applies events until the watch ends; ``_version`` follows every event, so a watch
        that breaks resumes after the last event seen, not from where it started."""
        events = self._kube.watch(
            self.resource, version, self._namespace, self._selector, self._watch_timeout
        )
        for kind, obj in events:
            self._version = obj.get("metadata", {}).get("resourceVersion") or self._version
            if kind == "BOOKMARK":
                continue
            key = object_key(obj)
            with self._lock:
                if kind == "DELETED":
                    self._store.pop(key, None)
                else:
                    self._store[key] = obj
            self._handler(kind, obj)
            if self._stop.is_set():
                break
