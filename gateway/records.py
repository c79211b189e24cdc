"""The session records: Secrets ``<session>-state`` of the system namespace, key ``session.json``
(``api.upload.SessionRecord``), written by the controller and updated by the gateway.

Reads are cached for at most ``ttl`` seconds (1 s): a token check per request does not become an
API read per request, and a record the controller changed (expired, deleted) is seen within a
second. Unknown sessions are cached too, so a flood of guesses costs one read a second.
``update`` is a compare-and-swap (``resourceVersion``): it reads afresh, applies a change
function and replaces; on a conflict it starts over, so a replica never overwrites what another
replica or the controller wrote in between.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from api.upload import RECORD_KEY, InvalidRecord, SessionRecord, parse_record, record_name
from controller.errors import Conflict
from controller.kube import SECRETS, KubeApi

log = structlog.get_logger("gateway")
CAS_ATTEMPTS = 8
_MAX_CACHED = 4096


class RecordGone(Exception):  # noqa: N818 - what happened
    """The record disappeared or changed shape while being updated."""


@dataclass(frozen=True)
class _Entry:
    fetched_at: float
    record: SessionRecord | None
    secret: dict[str, Any] | None


class RecordStore:
    def __init__(
        self,
        kube: KubeApi,
        namespace: str,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace = namespace
        self._kube = kube
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def read(self, session: str, fresh: bool = False) -> SessionRecord | None:
        """The record, at most ``ttl`` seconds old unless ``fresh``; None when there is none."""
        if not fresh:
            with self._lock:
                entry = self._cache.get(session)
            if entry is not None and self._clock() - entry.fetched_at < self._ttl:
                return entry.record
        return self._fetch(session).record

    def update(
        self, session: str, change: Callable[[SessionRecord], SessionRecord | None]
    ) -> SessionRecord:
        """Applies ``change`` to the current record and writes it (None: nothing to write);
        returns the record as it now stands. ``RecordGone`` when there is no record."""
        for _ in range(CAS_ATTEMPTS):
            entry = self._fetch(session)
            if entry.record is None or entry.secret is None:
                raise RecordGone(f"the session record of {session} is gone")
            changed = change(entry.record)
            if changed is None:
                return entry.record
            secret = dict(entry.secret)
            data = dict(secret.get("data") or {})
            data[RECORD_KEY] = base64.b64encode(changed.to_json().encode()).decode()
            secret["data"] = data
            try:
                written = self._kube.replace(SECRETS, record_name(session), secret, self.namespace)
            except Conflict:
                continue
            self._remember(session, _Entry(self._clock(), changed, written))
            return changed
        raise RecordGone(f"the session record of {session} kept changing ({CAS_ATTEMPTS} tries)")

    def _fetch(self, session: str) -> _Entry:
        secret = self._kube.get(SECRETS, record_name(session), self.namespace)
        record = _record_of(session, secret) if secret is not None else None
        entry = _Entry(self._clock(), record, secret if record is not None else None)
        self._remember(session, entry)
        return entry

    def _remember(self, session: str, entry: _Entry) -> None:
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                horizon = self._clock() - self._ttl
                for key in [k for k, e in self._cache.items() if e.fetched_at < horizon]:
                    del self._cache[key]
                if len(self._cache) >= _MAX_CACHED:
                    self._cache.clear()
            self._cache[session] = entry


def _record_of(session: str, secret: dict[str, Any]) -> SessionRecord | None:
    """The record in the Secret; None (logged) when it is malformed or names another session."""
    encoded = (secret.get("data") or {}).get(RECORD_KEY)
    try:
        if not isinstance(encoded, str):
            raise InvalidRecord(f"the record Secret has no {RECORD_KEY}")
        record = parse_record(base64.b64decode(encoded, validate=True))
    except (InvalidRecord, binascii.Error, ValueError) as error:
        log.warning("unusable session record", session=session, error=str(error))
        return None
    if record.session != session:
        log.warning("session record names another session", session=session)
        return None
    return record
