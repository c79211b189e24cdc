"""The consumption annotations: every bad input refused with its exact message; readiness."""

# ruff: noqa: E501 - exact messages read best on one line

from __future__ import annotations

from typing import Any

import pytest

from api.protocol import ANNOTATION_CLUSTER_MODEL as CLUSTER
from api.protocol import ANNOTATION_MODEL as MODEL
from controller.consumption import (
    Digest,
    InvalidModelAnnotation,
    ModelRef,
    Waiting,
    digests_annotation,
    has_references,
    parse_references,
    readiness,
    waiting_cause,
)

NAME_RULE = (
    "is not a valid model name (lowercase letters, digits, '-' and '.', starting and ending "
    "with a letter or digit, at most 253 characters)"
)


def test_names_are_split_trimmed_and_kept_in_order() -> None:
    refs = parse_references({MODEL: " b , a\t", CLUSTER: "\nshared.v1 ", "other": "x"}, "ns")
    assert refs == [
        ModelRef("Model", "ns", "b"),
        ModelRef("Model", "ns", "a"),
        ModelRef("ClusterModel", "", "shared.v1"),
    ]
    assert [r.mount_path for r in refs] == ["/models/b", "/models/a", "/models/shared.v1"]
    assert parse_references({}, "ns") == []
    assert has_references({CLUSTER: ""})
    assert not has_references({"x": "y"})
    assert not has_references(None)


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {MODEL: ""},
            f'annotation {MODEL}: empty name at position 1 of ""; write model names separated by commas',
        ),
        (
            {MODEL: "a,,b"},
            f'annotation {MODEL}: empty name at position 2 of "a,,b"; write model names separated by commas',
        ),
        (
            {CLUSTER: "a, "},
            f'annotation {CLUSTER}: empty name at position 2 of "a, "; write model names separated by commas',
        ),
        ({MODEL: "Llama"}, f'annotation {MODEL}: "Llama" {NAME_RULE}'),
        ({MODEL: "a_b"}, f'annotation {MODEL}: "a_b" {NAME_RULE}'),
        ({MODEL: "-a"}, f'annotation {MODEL}: "-a" {NAME_RULE}'),
        ({MODEL: "a..b"}, f'annotation {MODEL}: "a..b" {NAME_RULE}'),
        ({MODEL: "a b"}, f'annotation {MODEL}: "a b" {NAME_RULE}'),
        ({MODEL: "a" * 254}, f'annotation {MODEL}: "{"a" * 253}" {NAME_RULE}'),
        ({MODEL: "a,b,a"}, f'annotation {MODEL}: "a" is listed twice; name each model once'),
        (
            {MODEL: ",".join(f"m{i}" for i in range(100))},
            f"annotation {MODEL} names more than 16 models; at most 16 models per workload",
        ),
        (
            {MODEL: "x" * 5000},
            f"annotation {MODEL} names more than 16 models; at most 16 models per workload",
        ),
        (
            {
                MODEL: ",".join(f"m{i}" for i in range(10)),
                CLUSTER: ",".join(f"c{i}" for i in range(7)),
            },
            f"annotations {MODEL} and {CLUSTER} name 17 models; at most 16 models per workload",
        ),
        (
            {MODEL: "llama", CLUSTER: "llama"},
            f'"llama" is named by both {MODEL} and {CLUSTER}; both would be mounted at /models/llama: rename one of the models',
        ),
    ],
)
def test_bad_annotations_are_refused_with_exact_messages(
    annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidModelAnnotation) as refused:
        parse_references(annotations, "ns")
    assert str(refused.value) == message
    assert refused.value.reason == "InvalidModelAnnotation"


def test_sixteen_names_are_allowed() -> None:
    names = ",".join(f"m{i}" for i in range(16))
    assert len(parse_references({MODEL: names}, "ns")) == 16


def _store(objects: dict[tuple[str, str, str], dict[str, Any]]) -> Any:
    return lambda kind, namespace, name: objects.get((kind, namespace, name))


READY = {"status": {"phase": "Ready", "artifact": {"digest": "sha256:" + "1" * 64}}}


def test_every_model_ready_gives_the_digests_in_order() -> None:
    refs = parse_references({MODEL: "a", CLUSTER: "c"}, "ns")
    state = readiness(refs, _store({("Model", "ns", "a"): READY, ("ClusterModel", "", "c"): READY}))
    assert state == [Digest(refs[0], "sha256:" + "1" * 64), Digest(refs[1], "sha256:" + "1" * 64)]
    assert digests_annotation(state) == (
        '[{"kind":"Model","name":"a","digest":"sha256:' + "1" * 64 + '"},'
        '{"kind":"ClusterModel","name":"c","digest":"sha256:' + "1" * 64 + '"}]'
    )


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (None, "waiting for Model ns/a: not found"),
        ({"status": {}}, "waiting for Model ns/a: Pending"),
        (
            {"status": {"phase": "Publishing", "progress": "37%"}},
            "waiting for Model ns/a: Publishing (37%)",
        ),
        ({"status": {"phase": "Publishing"}}, "waiting for Model ns/a: Publishing"),
        (
            {
                "status": {
                    "phase": "Failed",
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "SourceNotFound",
                            "message": "no such repository",
                        }
                    ],
                }
            },
            "waiting for Model ns/a: Failed (SourceNotFound: no such repository)",
        ),
        (
            {"status": {"phase": "Ready"}},
            "waiting for Model ns/a: Ready without an artifact digest",
        ),
        (
            {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, **READY},
            "waiting for Model ns/a: being deleted",
        ),
    ],
)
def test_the_first_model_not_ready_is_named_with_its_cause(
    obj: dict[str, Any] | None, message: str
) -> None:
    objects = {("Model", "ns", "a"): obj} if obj is not None else {}
    state = readiness(parse_references({MODEL: "a"}, "ns"), _store(objects))
    assert isinstance(state, Waiting)
    assert state.message == message


def test_more_models_waiting_are_counted_and_a_cluster_model_hint_is_given() -> None:
    refs = parse_references({MODEL: "a,b,c"}, "ns")
    state = readiness(refs, _store({("ClusterModel", "", "a"): READY}))
    assert isinstance(state, Waiting)
    assert state.message == (
        "waiting for Model ns/a: not found (a ClusterModel a exists: name it in "
        f"{CLUSTER} instead); 2 more models not Ready"
    )


def test_the_cause_of_a_message_drops_only_the_progress() -> None:
    assert (
        waiting_cause("waiting for Model ns/a: Publishing (37%)")
        == "waiting for Model ns/a: Publishing"
    )
    assert waiting_cause("waiting for Model ns/a: Publishing (37%); 1 more model not Ready") == (
        "waiting for Model ns/a: Publishing; 1 more model not Ready"
    )
    assert waiting_cause("waiting for Model ns/a: not found") == "waiting for Model ns/a: not found"
