"""An in-memory API server behind the controller's facade (``controller.kube.KubeApi``), for
unit tests: the spirit of controller-runtime's fake client, in small.

- objects are keyed by (resource plural, namespace, name); every write bumps one cluster-wide
  ``resourceVersion``; create assigns a ``uid`` (unless the body names one: tests pin UIDs),
  ``generation`` 1 and a ``creationTimestamp``; a change to ``spec`` bumps ``generation``;
- create of an existing name → ``Conflict`` (409 AlreadyExists); replace or patch carrying a
  stale ``metadata.resourceVersion`` → ``Conflict`` (409 Conflict); replace or patch of a
  missing object → ``NotFound``; ``get`` answers ``None`` and ``delete`` ``False`` for a
  missing object, as the facade does;
- resources with a status subresource (Model, ClusterModel, Job, Pod): a write to ``status``
  changes only the status, a write to the object leaves the status as stored;
- delete of an object with finalizers sets ``deletionTimestamp``; the object goes when a write
  removes its last finalizer. There is no garbage collector: owned objects stay;
- merge patch follows RFC 7386 (``None`` removes a field, lists are replaced);
- ``watch`` replays the changes after a resourceVersion, then ends (a server's watch timeout);
- every call is recorded in ``calls`` before it is served; ``fail`` injects an error per verb
  and resource (``forbid``: RBAC's 403), ``before`` runs a hook as a call arrives (delete the
  object mid-reconcile, hold a thread at a barrier).

Tests change the world as other actors would through ``seed``, ``set_status`` and ``drop``
(not recorded as calls). Time is a ``FakeClock``: nothing sleeps. Thread-safe: hooks and
injected errors run outside the store's lock, so a hook may block.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from api.upload import LABEL_UPLOAD_SESSION
from controller.caches import InformerCaches
from controller.errors import Conflict, Forbidden, KubeError, NotFound
from controller.kube import (
    CLUSTER_MODELS,
    JOBS,
    MODEL_CATALOG_SOURCES,
    MODELS,
    PODS,
    SECRETS,
    Resource,
)

if TYPE_CHECKING:
    from controller.kube import KubeApi

JSON = dict[str, Any]
Where = tuple[str, str, str]
"""(resource plural, namespace — empty when cluster-scoped, name)."""
STATUS_SUBRESOURCE = frozenset({"models", "clustermodels", "jobs", "pods", "modelcatalogsources"})
EPOCH = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


class FakeClock:
    """Time that moves only when told: ``advance``."""

    def __init__(self, start: dt.datetime = EPOCH, monotonic: float = 1000.0) -> None:
        self._start, self._mono0, self._elapsed = start, monotonic, 0.0
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds

    def monotonic(self) -> float:
        with self._lock:
            return self._mono0 + self._elapsed

    def now(self) -> dt.datetime:
        with self._lock:
            return self._start + dt.timedelta(seconds=self._elapsed)

    def rfc3339(self) -> str:
        return self.now().strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Call:
    """One request as the facade would have sent it."""

    verb: str
    """get, list, watch, create, replace, patch or delete."""
    resource: str
    namespace: str
    name: str = ""
    sub: str = ""
    body: JSON | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = "/".join(part for part in (self.namespace, self.name) if part)
        sub = f"/{self.sub}" if self.sub else ""
        return f"{self.verb} {self.resource}{sub} {where}".rstrip()


Hook = Callable[[Call], object]
"""Run as a call arrives; what it returns is ignored."""


@dataclass
class _Injected:
    error: KubeError
    times: int | None
    name: str | None


def merge_patch(target: JSON, patch: JSON) -> JSON:
    """RFC 7386 merge patch, in place; returns ``target``."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        elif isinstance(value, dict):
            target[key] = merge_patch({}, value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def matches(labels: dict[str, str], selector: str | None) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    for term in (selector or "").split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeKube:
    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.calls: list[Call] = []
        self._store: dict[Where, JSON] = {}
        self._changes: list[tuple[int, str, Where, JSON]] = []
        self._version = itertools.count(1)
        self._uids = itertools.count(1)
        self._names = itertools.count(1)
        self._lock = threading.RLock()
        self._errors: dict[tuple[str, str], list[_Injected]] = {}
        self._hooks: dict[tuple[str, str], list[tuple[Hook, bool]]] = {}

    # ---- test controls (not recorded) ---------------------------------------------------------

    def fail(
        self,
        verb: str,
        resource: Resource | str,
        error: KubeError,
        *,
        times: int | None = 1,
        name: str | None = None,
    ) -> None:
        """The next ``times`` calls of ``verb`` on ``resource`` (``None``: all of them; ``name``:
        only of that object) raise ``error`` instead of being served."""
        plural = resource if isinstance(resource, str) else resource.plural
        with self._lock:
            self._errors.setdefault((verb, plural), []).append(_Injected(error, times, name))

    def forbid(self, verb: str, resource: Resource | str) -> None:
        """RBAC refuses every ``verb`` on ``resource`` (403 Forbidden)."""
        plural = resource if isinstance(resource, str) else resource.plural
        message = f'{plural} is forbidden: User "system:serviceaccount:test" cannot {verb}'
        self.fail(verb, plural, Forbidden(403, "Forbidden", message), times=None)

    def before(
        self, verb: str, resource: Resource | str, hook: Hook, *, once: bool = False
    ) -> None:
        """Runs ``hook`` as each call of ``verb`` on ``resource`` arrives (after it is recorded,
        before injected errors and the store); ``once``: for the first such call only."""
        plural = resource if isinstance(resource, str) else resource.plural
        with self._lock:
            self._hooks.setdefault((verb, plural), []).append((hook, once))

    def seed(self, res: Resource, obj: JSON, namespace: str | None = None) -> JSON:
        """Stores ``obj`` as if created before the test, in place of any object of its name
        (server fields filled in where missing)."""
        with self._lock:
            stored = copy.deepcopy(obj)
            ns = self._namespace(res, stored, namespace)
            where = (res.plural, ns, stored["metadata"]["name"])
            stored = self._fill(res, stored, ns)
            self._commit("ADDED", where, stored)
            return copy.deepcopy(stored)

    def stored(self, res: Resource, name: str, namespace: str | None = None) -> JSON | None:
        with self._lock:
            found = self._store.get((res.plural, namespace or "", name))
            return copy.deepcopy(found) if found is not None else None

    def objects(self, res: Resource, namespace: str | None = None) -> list[JSON]:
        """Stored objects of ``res`` (in one namespace, or all), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(o)
                for (plural, ns, _), o in self._store.items()
                if plural == res.plural and (namespace is None or ns == namespace)
            ]

    def set_status(self, res: Resource, name: str, namespace: str | None, status: JSON) -> JSON:
        """Another actor (the Job controller, the kubelet) writes the status."""
        with self._lock:
            where = self._existing(res, name, namespace)
            obj = copy.deepcopy(self._store[where])
            obj["status"] = copy.deepcopy(status)
            self._commit("MODIFIED", where, obj)
            return copy.deepcopy(obj)

    def drop(self, res: Resource, name: str, namespace: str | None = None) -> None:
        """The object is gone at once (finalizers or not), as if deleted by someone else."""
        with self._lock:
            where = self._existing(res, name, namespace)
            self._commit("DELETED", where, self._store[where])

    def calls_of(
        self, verb: str | None = None, resource: Resource | str | None = None
    ) -> list[Call]:
        plural = resource.plural if isinstance(resource, Resource) else resource
        with self._lock:
            return [
                c
                for c in self.calls
                if (verb is None or c.verb == verb) and (plural is None or c.resource == plural)
            ]

    @property
    def resource_version(self) -> str:
        """The resourceVersion of the latest change."""
        with self._lock:
            return str(self._changes[-1][0]) if self._changes else "0"

    # ---- the facade -----------------------------------------------------------------------------

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[JSON], str]:
        self._arrive(Call("list", res.plural, namespace or ""))
        with self._lock:
            items = [
                o
                for o in self.objects(res, namespace)
                if matches(o["metadata"].get("labels") or {}, label_selector)
            ]
            return items, self.resource_version

    def watch(
        self,
        res: Resource,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[tuple[str, JSON]]:
        self._arrive(Call("watch", res.plural, namespace or ""))
        after = int(resource_version or 0)
        with self._lock:
            events = [
                (kind, copy.deepcopy(obj))
                for version, kind, (plural, ns, _), obj in self._changes
                if version > after
                and plural == res.plural
                and (namespace is None or ns == namespace)
                and matches(obj["metadata"].get("labels") or {}, label_selector)
            ]
        return iter(events)

    def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON | None:
        self._arrive(Call("get", res.plural, namespace or "", name))
        return self.stored(res, name, namespace)

    def create(self, res: Resource, body: JSON, namespace: str | None = None) -> JSON:
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        self._arrive(Call("create", res.plural, namespace or "", name, "", copy.deepcopy(body)))
        with self._lock:
            obj = copy.deepcopy(body)
            if not name:
                name = f"{meta.get('generateName', '')}{next(self._names):05d}"
                obj["metadata"]["name"] = name
            ns = self._namespace(res, obj, namespace)
            where = (res.plural, ns, name)
            if where in self._store:
                message = f'{res.plural} "{name}" already exists'
                raise Conflict(409, "AlreadyExists", message)
            stored = self._fill(res, obj, ns)
            stored["metadata"].pop("deletionTimestamp", None)
            self._commit("ADDED", where, stored)
            return copy.deepcopy(stored)

    def merge_patch(
        self, res: Resource, name: str, patch: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        self._arrive(Call("patch", res.plural, namespace or "", name, sub, copy.deepcopy(patch)))
        with self._lock:
            where = self._existing(res, name, namespace)
            current = self._store[where]
            self._precondition(res, name, current, patch)
            updated = merge_patch(copy.deepcopy(current), patch)
            return self._update(res, where, current, updated, sub)

    def replace(
        self, res: Resource, name: str, body: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        self._arrive(Call("replace", res.plural, namespace or "", name, sub, copy.deepcopy(body)))
        with self._lock:
            where = self._existing(res, name, namespace)
            current = self._store[where]
            self._precondition(res, name, current, body)
            return self._update(res, where, current, copy.deepcopy(body), sub)

    def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        self._arrive(Call("delete", res.plural, namespace or "", name))
        with self._lock:
            where = (res.plural, namespace or "", name)
            current = self._store.get(where)
            if current is None:
                return False
            if not current["metadata"].get("finalizers"):
                self._commit("DELETED", where, current)
                return True
            if not current["metadata"].get("deletionTimestamp"):
                obj = copy.deepcopy(current)
                obj["metadata"]["deletionTimestamp"] = self.clock.rfc3339()
                self._commit("MODIFIED", where, obj)
            return True

    # ---- internals ------------------------------------------------------------------------------

    def _arrive(self, call: Call) -> None:
        """Records the call, runs its hooks, raises an injected error if one is due."""
        key = (call.verb, call.resource)
        with self._lock:
            self.calls.append(call)
            hooks = list(self._hooks.get(key, []))
            self._hooks[key] = [(h, once) for h, once in hooks if not once]
        for hook, _ in hooks:
            hook(call)
        with self._lock:
            for injected in self._errors.get(key, []):
                if injected.name not in (None, call.name) or injected.times == 0:
                    continue
                if injected.times is not None:
                    injected.times -= 1
                error = injected.error
                raise type(error)(error.status, error.reason, error.message)

    def _namespace(self, res: Resource, obj: JSON, namespace: str | None) -> str:
        if not res.namespaced:
            obj["metadata"].pop("namespace", None)
            return ""
        ns = namespace or obj["metadata"].get("namespace") or ""
        obj["metadata"]["namespace"] = ns
        return ns

    def _fill(self, res: Resource, obj: JSON, namespace: str) -> JSON:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta.setdefault("creationTimestamp", self.clock.rfc3339())
        meta.setdefault("generation", 1)
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        return obj

    def _existing(self, res: Resource, name: str, namespace: str | None) -> Where:
        where = (res.plural, namespace or "", name)
        if where not in self._store:
            raise NotFound(404, "NotFound", f'{res.plural} "{name}" not found')
        return where

    @staticmethod
    def _precondition(res: Resource, name: str, current: JSON, body: JSON) -> None:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and str(wanted) != current["metadata"]["resourceVersion"]:
            raise Conflict(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res.plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )

    def _update(self, res: Resource, where: Where, current: JSON, body: JSON, sub: str) -> JSON:
        if sub == "status":
            updated = copy.deepcopy(current)
            updated["status"] = body.get("status")
        else:
            updated = body
            if res.plural in STATUS_SUBRESOURCE:
                updated.pop("status", None)
                if "status" in current:
                    updated["status"] = copy.deepcopy(current["status"])
            meta, before = updated.setdefault("metadata", {}), current["metadata"]
            for server_field in ("uid", "creationTimestamp", "deletionTimestamp", "namespace"):
                if server_field in before:
                    meta[server_field] = before[server_field]
            changed = updated.get("spec") != current.get("spec")
            meta["generation"] = before.get("generation", 1) + (1 if changed else 0)
        if updated["metadata"].get("deletionTimestamp") and not updated["metadata"].get(
            "finalizers"
        ):
            self._commit("DELETED", where, updated)
        else:
            self._commit("MODIFIED", where, updated)
        return copy.deepcopy(updated)

    def _commit(self, kind: str, where: Where, obj: JSON) -> None:
        version = next(self._version)
        obj["metadata"]["resourceVersion"] = str(version)
        if kind == "DELETED":
            self._store.pop(where, None)
        else:
            self._store[where] = obj
        self._changes.append((version, kind, where, copy.deepcopy(obj)))


class CacheView:
    """An informer cache that is the fake API server's current state, less the objects named in
    ``hidden`` (an informer that has not seen them yet). Reads are not calls. ``on_read`` runs
    after each ``items`` read, before it returns (an informer applying an event right then)."""

    def __init__(
        self,
        kube: FakeKube,
        res: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> None:
        self._kube, self._res = kube, res
        self._namespace, self._selector = namespace, label_selector
        self.hidden: set[str] = set()
        self.on_read: Callable[[], object] | None = None

    def get(self, key: str) -> JSON | None:
        namespace, _, name = key.rpartition("/")
        if name in self.hidden or (self._namespace and namespace != self._namespace):
            return None
        found = self._kube.stored(self._res, name, namespace)
        labels = (found or {}).get("metadata", {}).get("labels") or {}
        return found if found is not None and matches(labels, self._selector) else None

    def items(self) -> list[JSON]:
        found = [
            o
            for o in self._kube.objects(self._res, self._namespace)
            if o["metadata"]["name"] not in self.hidden
            and matches(o["metadata"].get("labels") or {}, self._selector)
        ]
        if self.on_read is not None:
            self.on_read()
        return found


def fake_caches(kube: FakeKube, system: str) -> InformerCaches[CacheView]:
    """The controller's caches over ``kube``: all Models and ClusterModels, the Jobs and pods
    of the system namespace, and its upload session records."""
    return InformerCaches(
        models=CacheView(kube, MODELS),
        cluster_models=CacheView(kube, CLUSTER_MODELS),
        jobs=CacheView(kube, JOBS, system),
        pods=CacheView(kube, PODS, system),
        upload_records=CacheView(kube, SECRETS, system, LABEL_UPLOAD_SESSION),
        catalog_sources=CacheView(kube, MODEL_CATALOG_SOURCES),
    )


if TYPE_CHECKING:

    def _is_the_facade(fake: FakeKube) -> KubeApi:
        return fake  # mypy checks that the fake has the facade's interface
