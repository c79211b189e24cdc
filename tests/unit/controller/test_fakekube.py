"""The in-memory API server of the unit tests answers as the real one does where the controller
depends on it: conflicts, not-found, the status subresource, finalizers, watches, injected
errors; and it records every call."""

from __future__ import annotations

import pytest

from controller.errors import ApiUnavailable, Conflict, Forbidden, NotFound
from controller.kube import LEASES, MODELS, SECRETS
from tests.unit.controller.fakekube import Call, FakeClock, FakeKube, merge_patch


def secret(name: str, **labels: str) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": "dg=="}}


def test_create_fills_server_fields_and_refuses_a_second_of_the_name() -> None:
    kube = FakeKube()
    created = kube.create(SECRETS, secret("a"), "ns")
    assert created["metadata"] == {
        "name": "a",
        "namespace": "ns",
        "labels": {},
        "uid": "uid-1",
        "creationTimestamp": "2026-01-02T03:04:05Z",
        "generation": 1,
        "resourceVersion": "1",
    }
    with pytest.raises(Conflict) as raised:
        kube.create(SECRETS, secret("a"), "ns")
    assert (raised.value.status, raised.value.reason) == (409, "AlreadyExists")
    event = kube.create(SECRETS, {"metadata": {"generateName": "a."}}, "ns")
    assert event["metadata"]["name"] == "a.00001"
    assert [str(c) for c in kube.calls] == [
        "create secrets ns/a",
        "create secrets ns/a",
        "create secrets ns",
    ]


def test_writes_with_a_stale_resource_version_conflict_and_spec_changes_bump_generation() -> None:
    kube = FakeKube()
    first = kube.create(MODELS, {"metadata": {"name": "m"}, "spec": {"v": 1}}, "ns")
    patched = kube.merge_patch(MODELS, "m", {"spec": {"v": 2}}, "ns")
    assert (patched["metadata"]["generation"], patched["metadata"]["resourceVersion"]) == (2, "2")
    with pytest.raises(Conflict) as raised:
        kube.replace(MODELS, "m", first, "ns")
    assert raised.value.reason == "Conflict"
    stale = {"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}}
    with pytest.raises(Conflict):
        kube.merge_patch(MODELS, "m", stale, "ns")
    labelled = kube.merge_patch(MODELS, "m", {"metadata": {"labels": {"a": "b"}}}, "ns")
    assert labelled["metadata"]["generation"] == 2  # metadata is not spec
    with pytest.raises(NotFound):
        kube.replace(MODELS, "gone", first, "ns")
    assert kube.get(MODELS, "gone", "ns") is None


def test_status_is_a_subresource() -> None:
    kube = FakeKube()
    obj = kube.create(MODELS, {"metadata": {"name": "m"}, "spec": {"v": 1}}, "ns")
    written = kube.replace(
        MODELS, "m", {**obj, "spec": {"v": 9}, "status": {"phase": "Ready"}}, "ns", "status"
    )
    assert (written["spec"], written["status"]) == ({"v": 1}, {"phase": "Ready"})
    replaced = kube.replace(MODELS, "m", {**written, "status": {"phase": "Failed"}}, "ns")
    assert replaced["status"] == {"phase": "Ready"}


def test_delete_waits_for_the_finalizers() -> None:
    kube = FakeKube(FakeClock())
    kube.create(MODELS, {"metadata": {"name": "m", "finalizers": ["f"]}}, "ns")
    assert kube.delete(MODELS, "m", "ns") is True
    deleting = kube.stored(MODELS, "m", "ns")
    assert deleting is not None
    assert deleting["metadata"]["deletionTimestamp"] == "2026-01-02T03:04:05Z"
    kube.merge_patch(MODELS, "m", {"metadata": {"finalizers": []}}, "ns")
    assert kube.stored(MODELS, "m", "ns") is None
    assert kube.delete(MODELS, "m", "ns") is False
    assert [kind for kind, _ in kube.watch(MODELS, "0", "ns")] == ["ADDED", "MODIFIED", "DELETED"]
    assert [kind for kind, _ in kube.watch(MODELS, "2")] == ["DELETED"]


def test_list_and_watch_select_by_label_and_namespace() -> None:
    kube = FakeKube()
    kube.create(SECRETS, secret("a", app="w"), "ns")
    kube.create(SECRETS, secret("b", app="x"), "ns")
    kube.create(SECRETS, secret("c", app="w"), "other")
    items, version = kube.list(SECRETS, "ns", "app=w")
    assert ([o["metadata"]["name"] for o in items], version) == (["a"], "3")
    everywhere, _ = kube.list(SECRETS, None, "app,app!=x")
    assert [o["metadata"]["name"] for o in everywhere] == ["a", "c"]
    assert [o["metadata"]["name"] for _, o in kube.watch(SECRETS, "1", None, "app=w")] == ["c"]


def test_injected_errors_hooks_and_the_call_record() -> None:
    kube = FakeKube()
    kube.fail("get", SECRETS, ApiUnavailable(503, "ServiceUnavailable", "etcd"), times=2)
    kube.fail("create", LEASES, Conflict(409, "AlreadyExists", "x"), name="only-this")
    kube.forbid("delete", SECRETS)
    seen: list[Call] = []
    kube.before("get", SECRETS, seen.append, once=True)
    for _ in range(2):
        with pytest.raises(ApiUnavailable):
            kube.get(SECRETS, "a", "ns")
    assert kube.get(SECRETS, "a", "ns") is None
    assert kube.create(LEASES, {"metadata": {"name": "other"}}, "ns")["metadata"]["name"] == "other"
    with pytest.raises(Conflict):
        kube.create(LEASES, {"metadata": {"name": "only-this"}}, "ns")
    with pytest.raises(Forbidden) as raised:
        kube.delete(SECRETS, "a", "ns")
    assert raised.value.status == 403
    assert seen == [Call("get", "secrets", "ns", "a")]
    assert [str(c) for c in kube.calls_of("get")] == ["get secrets ns/a"] * 3
    assert len(kube.calls_of(resource=LEASES)) == 2


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"b": None, "c": [3], "e": {"f": None}}, "d": None}) == {
        "a": {"c": [3], "e": {}}
    }


def test_the_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    before = clock.monotonic()
    clock.advance(90.5)
    assert clock.monotonic() - before == 90.5
    assert clock.rfc3339() == "2026-01-02T03:05:35Z"
