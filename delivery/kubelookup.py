"""The delivery endpoint's questions to the API server, each answered from a short TTL cache.

``PodAuthenticator.pod_of(token)``: TokenReview (our audience) → the pod the token is bound to,
fetched and checked against the token's uid. The outcome (the pod, or the refusal) is cached by
the token's sha256 for ``ttl`` seconds — never past the token's own expiry — so the dozens of
requests of one ``materialize`` cost one TokenReview and one pod GET, and a flood of one bad
token costs one review per ``ttl``. ``ModelLookup`` caches Model/ClusterModel reads for a few
seconds for the same reason. The token itself is never stored or logged, only its hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from controller.kube import PODS, KubeClient, model_resource
from controller.naming import Kind
from delivery.authz import PodIdentity, Unauthenticated, identity_of, pod_annotations

JSON = dict[str, Any]
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - a path
T = TypeVar("T")


class TtlCache(Generic[T]):
    """A bounded map whose entries expire; the oldest entry goes when it is full."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._entries[key]
                return None
            return found[1]

    def put(self, key: str, value: T, seconds: float) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


PodOutcome = tuple[PodIdentity, dict[str, str]] | Unauthenticated


class PodAuthenticator:
    def __init__(
        self,
        kube: KubeClient,
        audience: str,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._kube = kube
        self.audience = audience
        self._ttl = ttl
        self._wall = wall_clock
        self._cache: TtlCache[PodOutcome] = TtlCache(4096, clock)

    def pod_of(self, token: str) -> tuple[PodIdentity, dict[str, str]]:
        """The pod the token is bound to and its annotations; ``Unauthenticated`` otherwise
        (``KubeError`` when the API server cannot answer: not cached)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        outcome = self._cache.get(key)
        if outcome is None:
            outcome = self._review(token)
            self._cache.put(key, outcome, self._lifetime(token))
        if isinstance(outcome, Unauthenticated):
            raise outcome
        return outcome

    def _review(self, token: str) -> PodOutcome:
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        status = self._kube.request("POST", TOKEN_REVIEWS, body=review).get("status") or {}
        try:
            identity = identity_of(status, self.audience)
            pod = self._kube.get(PODS, identity.name, identity.namespace)
            return identity, pod_annotations(identity, pod)
        except Unauthenticated as refused:
            return refused

    def _lifetime(self, token: str) -> float:
        """``ttl``, or less when the token expires sooner (its ``exp`` claim: read only after
        the API server verified the token; an unreadable claim means the full ttl)."""
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            left = float(claims["exp"]) - self._wall()
        except (IndexError, KeyError, TypeError, ValueError):
            return self._ttl
        return max(0.0, min(self._ttl, left))


class ModelLookup:
    def __init__(
        self, kube: KubeClient, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._kube = kube
        self._ttl = ttl
        self._cache: TtlCache[JSON | None] = TtlCache(4096, clock)

    def get(self, kind: Kind, namespace: str, name: str) -> JSON | None:
        key = f"{kind}/{namespace}/{name}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached or None
        found = self._kube.get(model_resource(kind), name, namespace or None)
        self._cache.put(key, found or {}, self._ttl)
        return found
