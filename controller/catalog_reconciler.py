"""``reconcile(key)`` for ModelCatalogSource: refresh the remote catalog on its interval.

Observe: the source from the informer cache and when it is due (in memory: a restarted
controller refreshes every source at once). Decide: due when the spec changed (generation),
when nothing is held for it, or when its jittered interval passed. Act: read the credentials
Secret (``token``) and the optional CA Secret (``ca.crt``) from ``catalog.secretsNamespace``
with ``get`` (never copied, never logged), fetch with If-None-Match, put the entries into the
``CatalogStore``, write the status when it differs, and emit an Event when the Ready condition
or the revision changes.

    outcome of a refresh     store                 status                        next refresh
    200                      entries replaced      revision, count, time, Ready  interval ±10 %
    304                      marked Ready          nothing (unless not Ready)    interval ±10 %
    CatalogBusy (429/503)    kept, not Ready       Ready False, last good kept   Retry-After
    other failure            kept, not Ready       Ready False, last good kept   5 s doubling,
                                                                                 at most interval
    InvalidCatalogURL or
    InvalidRefreshInterval   kept, not Ready       Ready False                   on a spec change
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import structlog

from api.catalog_protocol import CatalogEntry
from controller.caches import Store
from controller.catalog_client import Catalog, CatalogClient, ca_bundle_file, valid_token
from controller.catalogs import CatalogStore
from controller.config import CatalogConfig, parse_duration
from controller.errors import (
    CASecretInvalid,
    CatalogBusy,
    CatalogError,
    CredentialsSecretInvalid,
    CredentialsSecretNotFound,
    InvalidCatalogURL,
    InvalidRefreshInterval,
)
from controller.events import EventRecorder
from controller.kube import MODEL_CATALOG_SOURCES, SECRETS, KubeApi

JSON = dict[str, Any]
log = structlog.get_logger("catalogs")
READY = "Ready"
REFRESHED = "CatalogRefreshed"
REVISION_CHANGED = "CatalogRevisionChanged"
JITTER = 0.1
FAILURE_RECHECK_FIRST_SECONDS = 5.0
TOKEN_KEY, CA_KEY = "token", "ca.crt"


@dataclass(frozen=True, order=True)
class SourceKey:
    """A ModelCatalogSource in the work queue (cluster-scoped: a name)."""

    name: str
    kind: Literal["ModelCatalogSource"] = "ModelCatalogSource"

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class SourceCredentials:
    """What a request to the catalog needs; ``repr`` never shows the token."""

    url: str
    token: str
    ca_pem: bytes | None

    def __repr__(self) -> str:
        return f"SourceCredentials(url={self.url!r})"


class CatalogFetcher(Protocol):
    def fetch(self, revision: str | None = None) -> Catalog | None: ...


ClientFactory = Callable[[str, str, Path | None], CatalogFetcher]


@dataclass
class _Schedule:
    generation: int
    due: float
    """Monotonic seconds; ``inf``: only a spec change refreshes again."""
    failures: int = 0


def check_url(url: str) -> str:
    """The controller's own guard over the CRD's: https with a host; no userinfo, query or
    fragment; no whitespace. ``InvalidCatalogURL`` otherwise."""
    problem = ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        problem = "is not a URL"
    else:
        if parts.scheme != "https" or not parts.hostname:
            problem = "must be https://host[:port][/path]"
        elif "@" in parts.netloc:
            problem = "must not carry credentials (userinfo)"
        elif parts.query or parts.fragment or "?" in url or "#" in url:
            problem = "must have no query or fragment"
        elif any(c.isspace() or not c.isprintable() for c in url):
            problem = "must not contain whitespace or control characters"
    if problem:
        raise InvalidCatalogURL(f"spec.url {problem}")
    return url.rstrip("/")


def source_credentials(kube: KubeApi, namespace: str, spec: JSON) -> SourceCredentials:
    """The URL (guarded), the token and the CA of a source's spec, read from ``namespace``;
    the typed error of the first problem. For the refresh and for the import's grants."""
    url = check_url(str(spec.get("url", "")))
    token = _secret_value(kube, namespace, spec["credentialsSecretName"], TOKEN_KEY, ca=False)
    text = token.decode("utf-8", "replace").strip()
    if not valid_token(text):
        raise CredentialsSecretInvalid(
            f"Secret {namespace}/{spec['credentialsSecretName']}: key {TOKEN_KEY!r} must be a "
            "non-empty printable ASCII token without spaces, at most 4096 characters"
        )
    ca_name = spec.get("caSecretName")
    pem = _secret_value(kube, namespace, ca_name, CA_KEY, ca=True) if ca_name else None
    return SourceCredentials(url, text, pem)


def _secret_value(kube: KubeApi, namespace: str, name: str, key: str, *, ca: bool) -> bytes:
    where = f"Secret {namespace}/{name}"
    secret = kube.get(SECRETS, name, namespace)
    if secret is None:
        if ca:
            raise CASecretInvalid(f"{where} (caSecretName) not found")
        raise CredentialsSecretNotFound(f"{where} (credentialsSecretName) not found")
    invalid = CASecretInvalid if ca else CredentialsSecretInvalid
    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        raise invalid(f"{where} has no {key!r} key")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}: key {key!r} is not base64") from None


def rfc3339(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(old: JSON) -> JSON:
    return next((c for c in old.get("conditions") or [] if c.get("type") == READY), {})


def _condition(old: JSON, gen: int, now: str, state: str, reason: str, message: str) -> JSON:
    before = _ready(old)
    changed = before.get("status") != state
    return {
        "type": READY,
        "status": state,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
        "lastTransitionTime": now if changed else before.get("lastTransitionTime", now),
    }


def refreshed_status(
    old: JSON, gen: int, now: str, revision: str, count: int, fetched: bool
) -> JSON:
    """Ready True; ``fetched``: a body was received now (a 304 keeps the time it had)."""
    message = f"revision {revision}: {count} active entries"
    when = now if fetched else old.get("lastSuccessfulRefreshTime", now)
    return {
        "catalogRevision": revision,
        "entryCount": count,
        "lastSuccessfulRefreshTime": when,
        "observedGeneration": gen,
        "conditions": [_condition(old, gen, now, "True", REFRESHED, message)],
    }


def failed_status(old: JSON, gen: int, now: str, reason: str, message: str) -> JSON:
    """Ready False; the last good revision, count and time stay."""
    kept = ("catalogRevision", "entryCount", "lastSuccessfulRefreshTime")
    status = {k: old[k] for k in kept if k in old}
    status["observedGeneration"] = gen
    status["conditions"] = [_condition(old, gen, now, "False", reason, message)]
    return status


def _default_client(url: str, token: str, ca_file: Path | None) -> CatalogFetcher:
    return CatalogClient(url, token, ca_file)


class CatalogReconciler:
    def __init__(
        self,
        kube: KubeApi,
        sources: Store,
        config: CatalogConfig,
        store: CatalogStore,
        events: EventRecorder,
        *,
        client: ClientFactory = _default_client,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        ca_dir: Path | None = None,
    ) -> None:
        self._kube = kube
        self._sources = sources
        self._config = config
        self.store = store
        self._events = events
        self._client = client
        self._now = now
        self._monotonic = monotonic
        self._jitter = jitter
        self._ca_dir = ca_dir
        self._lock = threading.Lock()
        self._schedules: dict[str, _Schedule] = {}

    def reconcile(self, key: SourceKey) -> float | None:
        obj = self._sources.get(f"/{key.name}")
        if obj is None:
            with self._lock:
                self._schedules.pop(key.name, None)
            self.store.remove(key.name)
            return None
        generation = int(obj["metadata"].get("generation", 1))
        with self._lock:
            schedule = self._schedules.get(key.name)
        if schedule is not None and schedule.generation == generation:
            wait = schedule.due - self._monotonic()
            if wait > 0:
                return None if math.isinf(wait) else wait
        return self._refresh(key.name, obj, generation, schedule)

    def _refresh(
        self, name: str, obj: JSON, generation: int, schedule: _Schedule | None
    ) -> float | None:
        old = obj.get("status") or {}
        now = self._now()
        failures = schedule.failures if schedule and schedule.generation == generation else 0
        interval = parse_duration(self._config.default_refresh_interval)
        token = ""
        try:
            interval = self._interval(obj["spec"])
            credentials = source_credentials(
                self._kube, self._config.secrets_namespace, obj["spec"]
            )
            token = credentials.token
            catalog = self._fetch(name, credentials)
        except CatalogError as error:
            self.store.mark_failed(name)
            message = str(error).replace(token, "[redacted]") if token else str(error)
            desired = failed_status(old, generation, rfc3339(now), error.reason, message)
            self._write(obj, desired)
            delay = self._failure_delay(error, interval, failures)
            log.info("catalog refresh failed", source=name, reason=error.reason, retry_in=delay)
            return self._schedule(name, generation, delay, failures + 1)
        if catalog is None:
            held = self.store.get(name)
            assert held is not None  # a 304 answers only the revision the store holds
            revision, count, fetched = held.revision, _active(held.entries), False
        else:
            self.store.put(name, catalog.revision, catalog.entries, now)
            revision, count, fetched = catalog.revision, catalog.active_count, True
        desired = refreshed_status(old, generation, rfc3339(now), revision, count, fetched)
        self._write(obj, desired)
        delay = interval * (1 - JITTER + 2 * JITTER * self._jitter())
        log.info(
            "catalog refreshed",
            source=name,
            revision=revision,
            entries=count,
            unchanged=not fetched,
            next_in=round(delay, 1),
        )
        return self._schedule(name, generation, delay, 0)

    def _fetch(self, name: str, credentials: SourceCredentials) -> Catalog | None:
        ca_file = None
        if credentials.ca_pem is not None:
            try:
                ca_file = ca_bundle_file(credentials.ca_pem, self._ca_dir)
            except ValueError:
                raise CASecretInvalid(
                    f"caSecretName: key {CA_KEY!r} is not PEM certificates"
                ) from None
        held = self.store.get(name)
        client = self._client(credentials.url, credentials.token, ca_file)
        catalog = client.fetch(held.revision if held is not None else None)
        if catalog is None:
            self.store.mark_ready(name)
        return catalog

    def _interval(self, spec: JSON) -> float:
        text = spec.get("refreshInterval") or self._config.default_refresh_interval
        try:
            return parse_duration(text)
        except ValueError as error:
            raise InvalidRefreshInterval(f"spec.refreshInterval: {error}") from None

    @staticmethod
    def _failure_delay(error: CatalogError, interval: float, failures: int) -> float:
        if isinstance(error, InvalidCatalogURL | InvalidRefreshInterval):
            return math.inf  # only a change of the spec can fix it
        if isinstance(error, CatalogBusy):
            return max(error.retry_after, 1.0)  # 0 would mean "done" to the queue
        return min(FAILURE_RECHECK_FIRST_SECONDS * 2.0 ** min(failures, 20), interval)

    def _schedule(self, name: str, generation: int, delay: float, failures: int) -> float | None:
        with self._lock:
            self._schedules[name] = _Schedule(generation, self._monotonic() + delay, failures)
        return None if math.isinf(delay) else delay

    def _write(self, obj: JSON, desired: JSON) -> None:
        old = obj.get("status") or {}
        if old == desired:
            return
        name = obj["metadata"]["name"]
        self._kube.replace(MODEL_CATALOG_SOURCES, name, {**obj, "status": desired}, None, "status")
        self._announce(obj, old, desired)

    def _announce(self, obj: JSON, old: JSON, new: JSON) -> None:
        """An Event when the Ready condition changes (status or reason) or the revision moves."""
        before, after = _ready(old), _ready(new)
        turned = (before.get("status"), before.get("reason")) != (after["status"], after["reason"])
        if after["status"] == "False":
            if turned:
                self._events.emit(obj, "Warning", after["reason"], after["message"])
        elif turned:
            self._events.emit(obj, "Normal", REFRESHED, after["message"])
        elif old.get("catalogRevision") != new["catalogRevision"]:
            message = f"revision {old.get('catalogRevision')} → {after['message']}"
            self._events.emit(obj, "Normal", REVISION_CHANGED, message)


def _active(entries: tuple[CatalogEntry, ...]) -> int:
    return sum(1 for e in entries if e.active)
