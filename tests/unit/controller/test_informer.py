"""The informer against a scripted API: relist on 410 Gone, resume after errors, deletes seen
at relist, handlers called with every change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from controller.errors import ApiUnavailable, Gone
from controller.informer import Informer
from controller.kube import MODELS

JSON = dict[str, Any]


def obj(name: str, rv: str) -> JSON:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": rv}}


class ScriptedKube:
    """Each list returns the next snapshot; each watch plays the next script (events, then an
    exception or a normal end)."""

    def __init__(
        self, lists: list[tuple[list[JSON], str]], watches: list[list[Any]], stop: threading.Event
    ) -> None:
        self.lists, self.watches, self.stop = lists, watches, stop
        self.watch_versions: list[str] = []

    def list(
        self, res: Any, namespace: Any = None, label_selector: Any = None
    ) -> tuple[list[JSON], str]:
        return self.lists.pop(0)

    def watch(
        self, res: Any, version: str, namespace: Any = None, selector: Any = None, timeout: int = 0
    ) -> Iterator[tuple[str, JSON]]:
        self.watch_versions.append(version)
        if not self.watches:
            self.stop.set()
            return
        for step in self.watches.pop(0):
            if isinstance(step, Exception):
                raise step
            yield step


class RecordingStop(threading.Event):
    """A stop flag whose waits return at once and are recorded (a fake clock for backoff)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def test_relist_on_gone_resume_on_errors_and_deletes_found_by_relist() -> None:
    stop = RecordingStop()
    kube = ScriptedKube(
        lists=[([obj("a", "1"), obj("b", "2")], "10"), ([obj("a", "11")], "20")],
        watches=[
            [
                ("MODIFIED", obj("a", "11")),
                ("BOOKMARK", obj("", "12")),
                Gone(410, "Expired", "too old"),
            ],
            [("ADDED", obj("c", "21")), ApiUnavailable(0, "WatchInterrupted", "reset")],
            [("DELETED", obj("c", "22"))],
        ],
        stop=stop,
    )
    seen: list[tuple[str, str]] = []
    informer = Informer(
        kube,
        MODELS,
        lambda e, o: seen.append((e, o["metadata"]["name"])),
        stop=stop,
        backoff_initial=0.25,
    )  # type: ignore[arg-type]
    informer.run()
    assert seen == [
        ("ADDED", "a"), ("ADDED", "b"),            # first list
        ("MODIFIED", "a"),                          # watch; the bookmark is not an event
        ("DELETED", "b"), ("ADDED", "a"),           # relist after 410: b vanished meanwhile
        ("ADDED", "c"),                             # watch; then a network error
        ("DELETED", "c"),                           # resumed from the last version, no relist
    ]  # fmt: skip
    assert kube.watch_versions == ["10", "20", "21", "22"]
    assert informer.relists == 2
    assert [o["metadata"]["name"] for o in informer.items()] == ["a"]
    assert informer.synced.is_set()
    assert stop.waits == [0.25]  # the backoff is a setting, asked for once, never slept here


def test_a_handler_sees_the_cache_with_its_change_applied() -> None:
    """The slot queue relies on it: a look woken by an event decides on a cache that has it."""
    stop = RecordingStop()
    kube = ScriptedKube(
        lists=[([obj("a", "1")], "10")],
        watches=[
            [("MODIFIED", obj("a", "11")), ("ADDED", obj("b", "12")), ("DELETED", obj("a", "13"))]
        ],
        stop=stop,
    )
    cached: list[tuple[str, str | None]] = []

    def handler(event: str, changed: JSON) -> None:
        found = informer.get(f"ns/{changed['metadata']['name']}")
        cached.append((event, found["metadata"]["resourceVersion"] if found else None))

    informer = Informer(kube, MODELS, handler, stop=stop)  # type: ignore[arg-type]
    informer.run()
    assert cached == [("ADDED", "1"), ("MODIFIED", "11"), ("ADDED", "12"), ("DELETED", None)]
