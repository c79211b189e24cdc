"""Starting a preparation: ``reconcile`` → ``Dispatcher.create_job`` against an in-memory API
server (objects keyed by resource, namespace and name; merge-patch semantics; 409 on create of
an existing name). The Job is rendered before anything is written, so a Job that cannot be
rendered or created leaves no token Secret behind and says why in status."""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from controller import naming
from controller.config import Config
from controller.dispatch import Dispatcher
from controller.errors import (
    ApiUnavailable,
    Conflict,
    Forbidden,
    JobRenderFailed,
    KubeError,
    NotFound,
)
from controller.events import EventRecorder
from controller.finalizer import Finalizer
from controller.jobs import JobRequest, build_job
from controller.kube import EVENTS, JOBS, MODELS, SECRETS, Resource
from controller.naming import ObjectKey
from controller.reconciler import Caches, Reconciler

JSON = dict[str, Any]
SYSTEM = "d8-ai-models"
UID = "0b7f6c1e-2d3a-4c5b-9e8f-112233445566"
JOB = f"prepare-{UID}"
TOKEN = base64.b64encode(b"hf_secret").decode()
NOW = "2026-01-02T03:04:05Z"


def merge(target: JSON, patch: JSON) -> JSON:
    for name, value in patch.items():
        if value is None:
            target.pop(name, None)
        elif isinstance(value, dict) and isinstance(target.get(name), dict):
            merge(target[name], value)
        else:
            target[name] = copy.deepcopy(value)
    return target


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], JSON] = {}
        self.uids = (f"uid-{i}" for i in itertools.count())
        self.reject: dict[str, KubeError] = {}
        """Resource plural → the error its next create raises."""
        self.forbidden: set[tuple[str, str]] = set()
        """(resource plural, namespace) where a get is refused as RBAC would."""

    def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON | None:
        if (res.plural, namespace or "") in self.forbidden:
            raise Forbidden(403, "Forbidden", f"cannot get resource {res.plural!r}")
        found = self.objects.get((res.plural, namespace or "", name))
        return copy.deepcopy(found) if found else None

    def create(self, res: Resource, body: JSON, namespace: str | None = None) -> JSON:
        if res.plural in self.reject:
            raise self.reject.pop(res.plural)
        meta = body["metadata"]
        name = meta.get("name") or f"{meta['generateName']}{next(self.uids)}"
        where = (res.plural, namespace or "", name)
        if where in self.objects:
            raise Conflict(409, "AlreadyExists", f"{res.plural} {name!r} already exists")
        stored = copy.deepcopy(body)
        stored["metadata"].update(name=name, namespace=namespace)
        stored["metadata"].setdefault("uid", next(self.uids))
        self.objects[where] = stored
        return copy.deepcopy(stored)

    def merge_patch(
        self, res: Resource, name: str, patch: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        where = (res.plural, namespace or "", name)
        if where not in self.objects:
            raise NotFound(404, "NotFound", f"{res.plural} {name!r} not found")
        return copy.deepcopy(merge(self.objects[where], patch))

    def replace(
        self, res: Resource, name: str, body: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        self.objects[(res.plural, namespace or "", name)] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def delete(self, res: Resource, name: str, namespace: str | None = None, **_: Any) -> bool:
        return self.objects.pop((res.plural, namespace or "", name), None) is not None

    def of(self, res: Resource, namespace: str | None = None) -> list[JSON]:
        return [
            o
            for (plural, ns, _), o in self.objects.items()
            if plural == res.plural and (namespace is None or ns == namespace)
        ]


class View:
    """An informer cache that is the fake API server's current state."""

    def __init__(self, kube: FakeKube, res: Resource) -> None:
        self._kube, self._res = kube, res

    def get(self, key: str) -> JSON | None:
        namespace, _, name = key.rpartition("/")
        return self._kube.get(self._res, name, namespace)

    def items(self) -> list[JSON]:
        return [copy.deepcopy(o) for o in self._kube.of(self._res)]


def model(url: str, auth_secret: str | None = "hf-token") -> JSON:  # noqa: S107
    source: JSON = {"url": url}
    if auth_secret:
        source["authSecretRef"] = {"name": auth_secret}
    return {
        "apiVersion": "ai.deckhouse.io/v1alpha1",
        "kind": "Model",
        "metadata": {
            "name": "private-model",
            "namespace": "team-a",
            "uid": UID,
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": NOW,
            "finalizers": [naming.FINALIZER],
        },
        "spec": {"source": source},
    }


def ground(
    url: str, build: Callable[[JobRequest, Config], JSON] = build_job
) -> tuple[FakeKube, Reconciler]:
    kube = FakeKube()
    kube.create(MODELS, model(url), "team-a")
    kube.create(SECRETS, {"metadata": {"name": "hf-token"}, "data": {"token": TOKEN}}, "team-a")
    fake: Any = kube
    views: Any = {r: View(kube, r) for r in (MODELS, JOBS, SECRETS)}
    caches = Caches(views[MODELS], views[MODELS], views[JOBS], views[JOBS])
    caches.pods_of = lambda job: []  # type: ignore[method-assign]
    config = Config(systemNamespace=SYSTEM)
    events = EventRecorder(fake)
    dispatcher = Dispatcher(fake, caches, config, build)
    finalizer = Finalizer(fake, caches, config, None, events, lambda: NOW)
    reconciler = Reconciler(
        fake, caches, config, dispatcher, finalizer, events, lambda: NOW, jitter=lambda: 0.5
    )
    return kube, reconciler


KEY = ObjectKey("Model", "team-a", "private-model")


def ready(kube: FakeKube) -> JSON:
    status = kube.objects[("models", "team-a", "private-model")]["status"]
    return next(c for c in status["conditions"] if c["type"] == "Ready")


@pytest.mark.parametrize("char", ["\u0080", "\u0085", "\ufffe", "\u2028", "\t"])
def test_awkward_url_starts_a_job_with_the_exact_url_and_its_token(char: str) -> None:
    url = f"https://huggingface.co/org/repo{char}"
    kube, reconciler = ground(url)
    assert reconciler.reconcile(KEY) is None
    job = kube.get(JOBS, JOB, SYSTEM)
    assert job is not None
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["prepare", url]
    secret = kube.get(SECRETS, f"{JOB}-source-token", SYSTEM)
    assert secret is not None
    assert secret["data"] == {"token": TOKEN}
    assert secret["metadata"]["ownerReferences"][0]["name"] == JOB
    assert kube.objects[("models", "team-a", "private-model")]["status"]["phase"] == "Publishing"


def test_a_job_that_cannot_be_rendered_fails_the_attempt_and_leaves_no_secret() -> None:
    def broken(request: JobRequest, config: Config) -> JSON:
        raise JobRenderFailed("preparation-job.yaml.j2: ReaderError: unacceptable character")

    kube, reconciler = ground("https://huggingface.co/org/repo", broken)
    assert reconciler.reconcile(KEY) is None
    assert kube.of(SECRETS, SYSTEM) == []
    assert kube.of(JOBS) == []
    obj = kube.objects[("models", "team-a", "private-model")]
    assert obj["status"]["phase"] == "Failed"
    assert ready(kube)["reason"] == "JobRenderFailed"
    assert ready(kube)["message"] == (
        "the preparation Job could not be created: preparation-job.yaml.j2: ReaderError: "
        "unacceptable character; set a new ai.deckhouse.io/retry annotation value to try again"
    )
    # The empty retry value is recorded as no annotation: no empty `retry-value:` on objects.
    assert naming.ANNOTATION_RETRY_OF not in obj["metadata"].get("annotations", {})
    [event] = kube.of(EVENTS)
    assert (event["type"], event["reason"]) == ("Warning", "PreparationFailed")
    # Terminal for this retry value: reconciling again creates nothing and writes nothing.
    before = copy.deepcopy(kube.objects)
    assert reconciler.reconcile(KEY) is None
    assert kube.objects == before


def test_a_job_the_api_server_refuses_fails_the_attempt_and_leaves_no_secret() -> None:
    kube, reconciler = ground("https://huggingface.co/org/repo")
    kube.reject["jobs"] = KubeError(422, "Invalid", 'Job.batch "x" is invalid: spec: Invalid')
    assert reconciler.reconcile(KEY) is None
    assert kube.of(SECRETS, SYSTEM) == []
    assert ready(kube)["reason"] == "JobRenderFailed"
    assert ready(kube)["message"] == (
        "the preparation Job could not be created: the API server rejected the Job: "
        '422 Invalid: Job.batch "x" is invalid: spec: Invalid; '
        "set a new ai.deckhouse.io/retry annotation value to try again"
    )


def test_a_transient_job_create_failure_keeps_the_secret_for_the_retry() -> None:
    kube, reconciler = ground("https://huggingface.co/org/repo")
    kube.reject["jobs"] = ApiUnavailable(0, "ConnectionError", "timed out")
    with pytest.raises(ApiUnavailable):
        reconciler.reconcile(KEY)
    assert [s["metadata"]["name"] for s in kube.of(SECRETS, SYSTEM)] == [f"{JOB}-source-token"]
    assert reconciler.reconcile(KEY) is None
    secret = kube.get(SECRETS, f"{JOB}-source-token", SYSTEM)
    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["name"] == JOB


def test_a_secret_the_controller_may_not_read_blocks_with_a_reason() -> None:
    kube, reconciler = ground("https://huggingface.co/org/repo")
    kube.forbidden.add(("secrets", "team-a"))
    # Rechecked soon, then less often (a jitter of ±20 %, here its middle): no Secret watch.
    assert [reconciler.reconcile(KEY) for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert kube.of(JOBS) == []
    assert kube.of(SECRETS, SYSTEM) == []
    obj = kube.objects[("models", "team-a", "private-model")]
    assert obj["status"]["phase"] == "Pending"
    assert ready(kube)["reason"] == "AuthSecretForbidden"
    assert ready(kube)["message"] == (
        "the controller may not read Secret team-a/hf-token named by spec.source.authSecretRef; "
        "namespace team-a is not in the chart's controller.authSecretNamespaces"
    )
    # One Event for the cause, not one per recheck.
    [event] = kube.of(EVENTS)
    assert (event["type"], event["reason"]) == ("Warning", "AuthSecretForbidden")
    assert event["message"] == ready(kube)["message"]
