"""The gate controller's pure decision and lift patch; the model → pods index."""

# ruff: noqa: E501 - exact messages read best on one line

from __future__ import annotations

import threading
from typing import Any

import pytest

from api.protocol import (
    ANNOTATION_DIGESTS,
    ANNOTATION_MODEL,
    ANNOTATION_WAITING,
    LABEL_GATED,
    SCHEDULING_GATE,
)
from controller.consumption import ModelRef, waiting_cause
from controller.gates import GateController, Lift, Wait, decide, lift_patch

DIGEST = "sha256:" + "d" * 64
GATE = {"name": SCHEDULING_GATE}


def gated(annotations: dict[str, str], gates: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "resourceVersion": "42",
            "annotations": annotations,
            "labels": {LABEL_GATED: "true"},
        },
        "spec": {"schedulingGates": gates if gates is not None else [GATE]},
    }


def store(obj: dict[str, Any] | None) -> Any:
    return lambda kind, namespace, name: (
        obj if (kind, namespace, name) == ("Model", "ns", "m") else None
    )


@pytest.mark.parametrize(
    ("model", "previous", "expected"),
    [
        (None, "", Wait("waiting for Model ns/m: not found", True, True)),
        (
            None,
            "waiting for Model ns/m: not found",
            Wait("waiting for Model ns/m: not found", False, False),
        ),
        (
            {"status": {"phase": "Publishing", "progress": "37%"}},
            "waiting for Model ns/m: not found",
            Wait("waiting for Model ns/m: Publishing (37%)", True, True),
        ),
        (
            {"status": {"phase": "Publishing", "progress": "40%"}},
            "waiting for Model ns/m: Publishing (37%)",
            Wait("waiting for Model ns/m: Publishing (40%)", False, False),
        ),
        (
            {"status": {"phase": "Publishing", "progress": "52%"}},
            "waiting for Model ns/m: Publishing (37%)",
            Wait("waiting for Model ns/m: Publishing (52%)", True, False),
        ),
        (
            {
                "status": {
                    "phase": "Failed",
                    "conditions": [
                        {"type": "Ready", "reason": "SourceNotFound", "message": "gone"}
                    ],
                }
            },
            "waiting for Model ns/m: Publishing (52%)",
            Wait("waiting for Model ns/m: Failed (SourceNotFound: gone)", True, True),
        ),
    ],
)
def test_a_waiting_pod_updates_and_emits_only_on_change(
    model: dict[str, Any] | None, previous: str, expected: Wait
) -> None:
    annotations = {ANNOTATION_MODEL: "m"}
    if previous:
        annotations[ANNOTATION_WAITING] = previous
    announced = waiting_cause(previous) if previous else None
    assert decide(gated(annotations), store(model), announced) == expected


def test_the_first_cause_a_pod_waits_for_is_announced_once() -> None:
    """The webhook wrote the waiting annotation at admission, when no pod existed to hold an
    Event: the first look of the gate controller emits it, the next one does not."""
    waiting = "waiting for Model ns/m: not found"
    pod = gated({ANNOTATION_MODEL: "m", ANNOTATION_WAITING: waiting})
    assert decide(pod, store(None), None) == Wait(waiting, False, True)
    assert decide(pod, store(None), waiting) == Wait(waiting, False, False)


def test_the_gate_controller_remembers_what_it_announced_per_pod() -> None:
    recorded: list[tuple[str, str]] = []

    class Events:
        def emit(self, obj: Any, kind: str, reason: str, message: str) -> None:
            recorded.append((reason, message))

    gates = GateController(None, store(None), Events(), threading.Event())  # type: ignore[arg-type]
    waiting = "waiting for Model ns/m: not found"
    pod = gated({ANNOTATION_MODEL: "m", ANNOTATION_WAITING: waiting})
    gates.pods.get = lambda key: pod  # type: ignore[method-assign]
    assert gates.reconcile("ns/p") == 300.0
    assert gates.reconcile("ns/p") == 300.0
    assert recorded == [("ModelNotReady", waiting)]
    gates._on_pod("DELETED", pod)
    assert gates.reconcile("ns/p") == 300.0
    assert recorded == [("ModelNotReady", waiting)] * 2


def test_every_model_ready_lifts_with_the_digests_of_that_moment() -> None:
    ready = {"status": {"phase": "Ready", "artifact": {"digest": DIGEST}}}
    decision = decide(gated({ANNOTATION_MODEL: "m"}), store(ready), None)
    assert isinstance(decision, Lift)
    assert [d.digest for d in decision.digests] == [DIGEST]


def test_the_lift_patch_writes_digests_and_removes_gate_label_and_waiting_at_once() -> None:
    pod = gated({ANNOTATION_MODEL: "m"}, [{"name": "other"}, GATE])
    ready = {"status": {"phase": "Ready", "artifact": {"digest": DIGEST}}}
    decision = decide(pod, store(ready), None)
    assert isinstance(decision, Lift)
    assert lift_patch(pod, decision.digests) == {
        "metadata": {
            "resourceVersion": "42",
            "annotations": {
                ANNOTATION_DIGESTS: f'[{{"kind":"Model","name":"m","digest":"{DIGEST}"}}]',
                ANNOTATION_WAITING: None,
            },
            "labels": {LABEL_GATED: None},
        },
        "spec": {"schedulingGates": [{"name": "other"}]},
    }
    assert lift_patch(gated({ANNOTATION_MODEL: "m"}), decision.digests)["spec"] == {
        "schedulingGates": None
    }


def test_a_pod_no_longer_gated_or_with_an_edited_annotation() -> None:
    assert decide(gated({ANNOTATION_MODEL: "m"}, []), store(None), None) is None
    decision = decide(gated({ANNOTATION_MODEL: "m,,"}), store(None), None)
    assert decision == Wait(
        'InvalidModelAnnotation: annotation ai.deckhouse.io/model: empty name at position 2 of "m,,"; write model names separated by commas',
        True,
        True,
    )


def test_a_model_event_queues_exactly_the_pods_naming_it() -> None:
    gates = GateController(None, store(None), None, threading.Event())  # type: ignore[arg-type]
    gates._on_pod(
        "ADDED",
        {"metadata": {"name": "a", "namespace": "ns", "annotations": {ANNOTATION_MODEL: "m, n"}}},
    )
    gates._on_pod(
        "ADDED",
        {"metadata": {"name": "b", "namespace": "ns", "annotations": {ANNOTATION_MODEL: "n"}}},
    )
    gates._on_pod(
        "ADDED",
        {"metadata": {"name": "c", "namespace": "other", "annotations": {ANNOTATION_MODEL: "m"}}},
    )
    assert gates.pods_waiting_for(ModelRef("Model", "ns", "m")) == {"ns/a"}
    assert gates.pods_waiting_for(ModelRef("Model", "ns", "n")) == {"ns/a", "ns/b"}
    for key in ("ns/a", "ns/b", "other/c"):  # drain the pod events
        assert gates.queue.get(timeout=0) == key
        gates.queue.done(key)
    gates.on_model("Model", {"metadata": {"name": "n", "namespace": "ns"}})
    assert sorted([gates.queue.get(timeout=0), gates.queue.get(timeout=0)]) == ["ns/a", "ns/b"]
    gates._on_pod(
        "DELETED",
        {"metadata": {"name": "a", "namespace": "ns", "annotations": {ANNOTATION_MODEL: "m, n"}}},
    )
    assert gates.pods_waiting_for(ModelRef("Model", "ns", "m")) == set()
    assert gates.pods_waiting_for(ModelRef("Model", "ns", "n")) == {"ns/b"}
