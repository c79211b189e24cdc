"""The webhook's mutations against golden files (regenerate: UPDATE_GOLDEN=1 pytest …); the
JSONPatch applied to its input gives the golden object; idempotency and collision refusals."""

# ruff: noqa: E501 - exact messages read best on one line

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.protocol import ANNOTATION_CLUSTER_MODEL, ANNOTATION_MODEL
from controller.config import MaterializeConfig
from controller.consumption import (
    Digest,
    ModelRef,
    ModelVolumeConflict,
    Waiting,
    parse_references,
)
from controller.podpatch import copy_to_template, inject_pod, volume_name

GOLDEN = Path(__file__).parent / "golden"
DIGEST = "sha256:" + "c" * 64
SETTINGS = MaterializeConfig(image="registry.example/ai-models-worker:0.1.0")


def apply(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add`` on object members (all the webhook emits), on a copy."""
    result = copy.deepcopy(obj)
    for op in ops:
        assert op["op"] == "add"
        *parents, last = op["path"].strip("/").split("/")
        node = result
        for part in parents:
            node = node[part]
        node[last] = op["value"]
    return result


def pod(annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "server", "namespace": "team-a", "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "setup", "image": "busybox"}],
            "containers": [
                {
                    "name": "app",
                    "image": "vllm",
                    "env": [{"name": "AI_MODELS_DIR", "value": "/custom"}],
                },
                {
                    "name": "sidecar",
                    "image": "envoy",
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/envoy"}],
                },
            ],
            "volumes": [{"name": "cfg", "configMap": {"name": "envoy"}}],
            **spec,
        },
    }


def check_golden(name: str, obj: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.yaml"
    text = yaml.safe_dump(obj, sort_keys=True)
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_a_pod_with_every_model_ready_gets_the_digests_and_no_gate() -> None:
    source = pod({ANNOTATION_MODEL: "llama"})
    refs = parse_references(source["metadata"]["annotations"], "team-a")
    ops = inject_pod(source, refs, [Digest(refs[0], DIGEST)], SETTINGS)
    check_golden("pod-ready-one-model", apply(source, ops))


def test_a_pod_waiting_for_models_is_gated_and_labelled() -> None:
    source = pod(
        {ANNOTATION_MODEL: "llama", ANNOTATION_CLUSTER_MODEL: "embeddings.v2"},
        schedulingGates=[{"name": "example.com/other"}],
    )
    refs = parse_references(source["metadata"]["annotations"], "team-a")
    waiting = Waiting(refs[1], "Publishing", "37%")
    ops = inject_pod(source, refs, waiting, SETTINGS)
    injected = apply(source, ops)
    check_golden("pod-gated-two-models", injected)
    assert injected["spec"]["schedulingGates"] == [
        {"name": "example.com/other"},
        {"name": "ai.deckhouse.io/model-ready"},
    ]


def test_the_input_is_not_modified_and_a_second_admission_injects_nothing() -> None:
    source = pod({ANNOTATION_MODEL: "llama"})
    before = copy.deepcopy(source)
    refs = parse_references(source["metadata"]["annotations"], "team-a")
    injected = apply(source, inject_pod(source, refs, [Digest(refs[0], DIGEST)], SETTINGS))
    assert source == before
    assert inject_pod(injected, refs, [Digest(refs[0], DIGEST)], SETTINGS) == []


def test_a_bare_pod_gets_every_member_created() -> None:
    source = {
        "metadata": {"name": "p", "annotations": {ANNOTATION_MODEL: "m"}},
        "spec": {"containers": [{"name": "c"}]},
    }
    refs = parse_references(source["metadata"]["annotations"], "ns")
    injected = apply(source, inject_pod(source, refs, [Digest(refs[0], DIGEST)], SETTINGS))
    container = injected["spec"]["containers"][0]
    assert container["env"] == [
        {"name": "AI_MODELS_DIR", "value": "/models"},
        {"name": "AI_MODEL_PATH", "value": "/models/m"},
    ]
    assert container["volumeMounts"] == [
        {"name": "ai-models-model-m", "mountPath": "/models/m", "readOnly": True}
    ]
    assert injected["metadata"]["labels"] == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"volumes": [{"name": "ai-models-model-llama", "emptyDir": {}}]},
            "the pod already defines volume 'ai-models-model-llama', a name the ai-models webhook reserves for model volumes: rename it",
        ),
        (
            {"volumes": [{"name": "ai-models-token", "emptyDir": {}}]},
            "the pod already defines volume 'ai-models-token', a name the ai-models webhook reserves for model volumes: rename it",
        ),
        (
            {
                "containers": [
                    {"name": "app", "volumeMounts": [{"name": "x", "mountPath": "/models/"}]}
                ]
            },
            "container 'app' mounts '/models/'; /models and the paths under it are where the ai-models webhook mounts models: move that mount",
        ),
        (
            {
                "initContainers": [
                    {
                        "name": "fetch",
                        "volumeMounts": [{"name": "x", "mountPath": "/models/other/sub"}],
                    }
                ]
            },
            "container 'fetch' mounts '/models/other/sub'; /models and the paths under it are where the ai-models webhook mounts models: move that mount",
        ),
    ],
)
def test_a_collision_is_refused_not_overwritten(spec: dict[str, Any], message: str) -> None:
    source = {"metadata": {"annotations": {ANNOTATION_MODEL: "llama"}}, "spec": spec}
    refs = parse_references(source["metadata"]["annotations"], "ns")
    with pytest.raises(ModelVolumeConflict) as refused:
        inject_pod(source, refs, [Digest(refs[0], DIGEST)], SETTINGS)
    assert str(refused.value) == message


def test_mounts_next_to_models_are_allowed() -> None:
    source = {
        "metadata": {"annotations": {ANNOTATION_MODEL: "m"}},
        "spec": {
            "containers": [
                {"name": "c", "volumeMounts": [{"name": "x", "mountPath": "/models-cache"}]}
            ]
        },
    }
    refs = parse_references(source["metadata"]["annotations"], "ns")
    assert inject_pod(source, refs, [Digest(refs[0], DIGEST)], SETTINGS) != []


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        (ModelRef("Model", "ns", "llama"), "ai-models-model-llama"),
        (ModelRef("ClusterModel", "", "llama"), "ai-models-clustermodel-llama"),
        (ModelRef("ClusterModel", "", "qwen2.5-7b"), "ai-models-clustermodel-qwen2-5-7b-2517bbb7"),
        (ModelRef("Model", "ns", "a" * 60), "ai-models-model-" + "a" * 38 + "-23220c75"),
    ],
)
def test_volume_names_are_dns_labels_and_deterministic(ref: ModelRef, name: str) -> None:
    assert volume_name(ref) == name
    assert len(name) <= 63


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Deployment", ["spec", "template"]),
        ("CronJob", ["spec", "jobTemplate", "spec", "template"]),
    ],
)
def test_workload_annotations_are_copied_to_the_template(kind: str, path: list[str]) -> None:
    template: dict[str, Any] = {
        "metadata": {
            "labels": {"app": "x"},
            "annotations": {"keep": "1", ANNOTATION_CLUSTER_MODEL: "old"},
        },
        "spec": {},
    }
    workload: dict[str, Any] = {"metadata": {"annotations": {ANNOTATION_MODEL: "a, b"}}, "spec": {}}
    node = workload
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = template
    ops = copy_to_template(workload, kind)
    patched = apply(workload, ops)
    for part in path:
        patched = patched[part]
    assert patched["metadata"] == {
        "labels": {"app": "x"},
        "annotations": {"keep": "1", ANNOTATION_MODEL: "a, b"},
    }
    again = apply(workload, ops)
    assert copy_to_template(again, kind) == []


def test_a_workload_without_a_template_is_left_to_the_api_server() -> None:
    assert (
        copy_to_template({"metadata": {"annotations": {ANNOTATION_MODEL: "a"}}}, "Deployment") == []
    )
