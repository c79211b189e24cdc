"""The admission answers: patch, deny with the message, pass through what is not ours."""

from __future__ import annotations

import base64
import json
from typing import Any

from api.protocol import ANNOTATION_MODEL
from controller.config import MaterializeConfig
from controller.webhook import PODS_PATH, WORKLOADS_PATH, admit


def review(kind: str, obj: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "request": {
            "uid": "u-1",
            "kind": {"kind": kind},
            "operation": operation,
            "namespace": "ns",
            "object": obj,
        }
    }


def none(kind: str, namespace: str, name: str) -> None:
    return None


def test_a_gated_pod_is_patched_and_warned() -> None:
    obj = {
        "metadata": {"annotations": {ANNOTATION_MODEL: "m"}},
        "spec": {"containers": [{"name": "c"}]},
    }
    answer = admit(PODS_PATH, review("Pod", obj), none, MaterializeConfig())["response"]
    assert answer["uid"] == "u-1"
    assert answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"
    assert answer["warnings"] == ["waiting for Model ns/m: not found"]
    paths = [op["path"] for op in json.loads(base64.b64decode(answer["patch"]))]
    assert paths == [
        "/metadata/annotations",
        "/metadata/labels",
        "/spec/volumes",
        "/spec/initContainers",
        "/spec/containers",
        "/spec/schedulingGates",
    ]


def test_a_bad_annotation_is_denied_with_reason_and_message() -> None:
    obj = {"metadata": {"annotations": {ANNOTATION_MODEL: "A"}}, "spec": {"template": {}}}
    answer = admit(WORKLOADS_PATH, review("Deployment", obj), none, MaterializeConfig())["response"]
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 400
    assert answer["status"]["message"].startswith(
        'InvalidModelAnnotation: annotation ai.deckhouse.io/model: "A" is not a valid model name'
    )


def test_pod_updates_unannotated_objects_and_other_kinds_pass_unchanged() -> None:
    annotated = {"metadata": {"annotations": {ANNOTATION_MODEL: "A"}}, "spec": {}}
    for path, kind, obj, operation in [
        (PODS_PATH, "Pod", annotated, "UPDATE"),
        (PODS_PATH, "Pod", {"metadata": {}}, "CREATE"),
        (WORKLOADS_PATH, "ConfigMap", annotated, "CREATE"),
        (PODS_PATH, "Deployment", annotated, "CREATE"),
    ]:
        answer = admit(path, review(kind, obj, operation), none, MaterializeConfig())["response"]
        assert answer == {"uid": "u-1", "allowed": True}
