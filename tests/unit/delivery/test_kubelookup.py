"""The TTL caches in front of the API server, on a fake clock: one review per token per TTL,
never past the token's expiry; failures of the API server are not cached."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from controller.errors import ApiUnavailable
from delivery.authz import Unauthenticated
from delivery.kubelookup import ModelLookup, PodAuthenticator

AUDIENCE = "ai-models-delivery"


class FakeKube:
    def __init__(self) -> None:
        self.reviews = 0
        self.gets: list[tuple[str, str, str | None]] = []
        self.down = False
        self.authenticated = True

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        if self.down:
            raise ApiUnavailable(503, "ServiceUnavailable", "down")
        self.reviews += 1
        assert body["spec"]["audiences"] == [AUDIENCE]
        return {"status": {
            "authenticated": self.authenticated, "audiences": [AUDIENCE],
            "user": {"username": "system:serviceaccount:ns:default", "extra": {
                "authentication.kubernetes.io/pod-name": ["p"],
                "authentication.kubernetes.io/pod-uid": ["u"]}},
        }}  # fmt: skip

    def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        self.gets.append((res.plural, name, namespace))
        if res.plural == "pods":
            return {"metadata": {"uid": "u", "annotations": {"k": "v"}}}
        return {"metadata": {"uid": "m"}} if name == "there" else None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _token(exp: float) -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
    return f"h.{claims}.s"


def test_one_review_per_token_within_the_ttl() -> None:
    kube, clock = FakeKube(), Clock()
    pods = PodAuthenticator(kube, AUDIENCE, ttl=30, clock=clock, wall_clock=clock)  # type: ignore[arg-type]
    token = _token(clock.now + 600)
    for _ in range(5):
        identity, annotations = pods.pod_of(token)
    assert (str(identity), annotations, kube.reviews) == ("ns/p", {"k": "v"}, 1)
    clock.now += 30
    pods.pod_of(token)
    assert kube.reviews == 2


def test_a_token_expiring_sooner_is_cached_only_until_its_expiry() -> None:
    kube, clock = FakeKube(), Clock()
    pods = PodAuthenticator(kube, AUDIENCE, ttl=30, clock=clock, wall_clock=clock)  # type: ignore[arg-type]
    token = _token(clock.now + 5)
    pods.pod_of(token)
    clock.now += 5
    pods.pod_of(token)
    assert kube.reviews == 2


def test_refusals_are_cached_and_api_failures_are_not() -> None:
    kube, clock = FakeKube(), Clock()
    pods = PodAuthenticator(kube, AUDIENCE, ttl=30, clock=clock, wall_clock=clock)  # type: ignore[arg-type]
    kube.authenticated = False
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            pods.pod_of("bad")
    assert kube.reviews == 1
    kube.down = True
    for _ in range(2):
        with pytest.raises(ApiUnavailable):
            pods.pod_of("other")
    kube.down, kube.authenticated = False, True
    pods.pod_of("other")
    assert kube.reviews == 2


def test_models_are_cached_for_a_few_seconds_missing_ones_too() -> None:
    kube, clock = FakeKube(), Clock()
    models = ModelLookup(kube, ttl=5, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        assert models.get("Model", "ns", "there") == {"metadata": {"uid": "m"}}
        assert models.get("ClusterModel", "", "gone") is None
    assert kube.gets == [("models", "there", "ns"), ("clustermodels", "gone", None)]
    clock.now += 5
    models.get("Model", "ns", "there")
    assert len(kube.gets) == 3
