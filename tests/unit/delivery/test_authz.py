"""The authorization decision, pure: every refusal with its exact message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from delivery.authz import (
    BlobRef,
    Denied,
    PodIdentity,
    Target,
    Unauthenticated,
    allowed_manifests,
    check_manifest,
    check_reference,
    identity_of,
    manifest_blobs,
    parse_path,
    pod_annotations,
    recorded_digest,
)

D1, D2, D3 = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64
POD = PodIdentity("team-b", "app-0", "uid-1", "default")
AUDIENCE = "ai-models-delivery"


def _status(**extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "authenticated": True,
        "audiences": [AUDIENCE],
        "user": {
            "username": "system:serviceaccount:team-b:default",
            "extra": {
                "authentication.kubernetes.io/pod-name": ["app-0"],
                "authentication.kubernetes.io/pod-uid": ["uid-1"],
            },
        },
    }
    status.update(extra)
    return status


def _digests(*entries: tuple[str, str, str]) -> str:
    return json.dumps([{"kind": k, "name": n, "digest": d} for k, n, d in entries])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            f"/v2/model/team-b/llama/manifests/{D1}",
            Target("Model", "team-b", "llama", "manifests", D1),
        ),
        (
            f"/v2/clustermodel/qwen2.5/blobs/{D2}",
            Target("ClusterModel", "", "qwen2.5", "blobs", D2),
        ),
        ("/v2/model/team-b/llama/manifests/latest", None),
        (f"/v2/model/llama/manifests/{D1}", None),
        (f"/v2/model/Team/llama/manifests/{D1}", None),
        (f"/v2/clustermodel/a/b/blobs/{D1}", None),
        (f"/v2/model/team-b/llama/tags/{D1}", None),
        (f"/v2/model/{'a' * 64}/llama/manifests/{D1}", None),
        (f"/v2/clustermodel/{'a' * 254}/manifests/{D1}", None),
        (f"/v2/model/team-b/../manifests/{D1}", None),
    ],
)
def test_paths(path: str, expected: Target | None) -> None:
    assert parse_path(path) == expected


def test_a_review_of_a_pod_bound_token_names_the_pod() -> None:
    assert identity_of(_status(), AUDIENCE) == POD


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (_status(authenticated=False, error="token has expired"),
         "token rejected by the API server: token has expired"),
        (_status(audiences=["https://kubernetes.default.svc"]),
         "the token is not for the audience 'ai-models-delivery'"),
        (_status(user={"username": "alice", "extra": {}}),
         "the token is not a ServiceAccount token"),
        (_status(user={"username": "system:serviceaccount:team-b:default"}),
         "the token is not bound to a pod (use a projected serviceAccountToken volume)"),
    ],
)  # fmt: skip
def test_reviews_that_do_not_vouch_for_a_pod_are_unauthenticated(
    status: dict[str, Any], message: str
) -> None:
    with pytest.raises(Unauthenticated) as refused:
        identity_of(status, AUDIENCE)
    assert str(refused.value) == message


def test_the_pod_must_still_exist_with_the_tokens_uid() -> None:
    live = {"metadata": {"uid": "uid-1", "annotations": {"a": "b"}}}
    assert pod_annotations(POD, live) == {"a": "b"}
    for gone in (None, {"metadata": {"uid": "uid-2"}}):
        with pytest.raises(Unauthenticated, match=r"^pod team-b/app-0 of the token no longer"):
            pod_annotations(POD, gone)


@pytest.mark.parametrize(
    ("target", "annotations", "message"),
    [
        (Target("Model", "team-a", "llama", "manifests", D1), {"ai.deckhouse.io/model": "llama"},
         "Model team-a/llama is not in the pod's namespace team-b: a pod consumes Models of its "
         "own namespace and ClusterModels only"),
        (Target("Model", "team-b", "llama", "manifests", D1), {},
         "pod team-b/app-0 does not reference Model team-b/llama "
         "(annotation ai.deckhouse.io/model)"),
        (Target("ClusterModel", "", "llama", "manifests", D1), {"ai.deckhouse.io/model": "llama"},
         "pod team-b/app-0 does not reference ClusterModel llama "
         "(annotation ai.deckhouse.io/clustermodel)"),
        (Target("Model", "team-b", "llama", "manifests", D1), {"ai.deckhouse.io/model": "a,,b"},
         'pod team-b/app-0: annotation ai.deckhouse.io/model: empty name at position 2 of "a,,b"; '
         "write model names separated by commas"),
    ],
)  # fmt: skip
def test_references_that_are_refused(
    target: Target, annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(Denied) as refused:
        check_reference(target, POD, annotations)
    assert str(refused.value) == message


def test_references_that_are_allowed() -> None:
    annotations = {"ai.deckhouse.io/model": " llama , other", "ai.deckhouse.io/clustermodel": "q"}
    check_reference(Target("Model", "team-b", "other", "blobs", D1), POD, annotations)
    check_reference(Target("ClusterModel", "", "q", "blobs", D1), POD, annotations)


def _model(phase: str | None, digest: str | None = None, deleting: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if digest:
        status["artifact"] = {"kind": "OCI", "digest": digest}
    meta: dict[str, Any] = {"uid": "m-1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": status}


LLAMA = Target("Model", "team-b", "llama", "manifests", D1)


def test_the_recorded_digest_comes_first_then_the_ready_one() -> None:
    annotations = {"ai.deckhouse.io/model-digests": _digests(("Model", "llama", D2))}
    assert allowed_manifests(LLAMA, POD, annotations, _model("Ready", D1)) == (D2, D1)
    assert allowed_manifests(LLAMA, POD, annotations, _model("Publishing")) == (D2,)
    assert allowed_manifests(LLAMA, POD, {}, _model("Ready", D1)) == (D1,)
    assert allowed_manifests(LLAMA, POD, annotations, _model("Ready", D2)) == (D2,)


def test_a_model_neither_ready_nor_recorded_is_refused() -> None:
    with pytest.raises(Denied) as refused:
        allowed_manifests(LLAMA, POD, {}, _model("Publishing"))
    assert str(refused.value) == (
        "Model team-b/llama is not Ready (Publishing) and pod team-b/app-0 has no digest "
        "recorded for it"
    )
    with pytest.raises(Denied, match=r"^Model team-b/llama is not Ready \(Ready\)"):
        allowed_manifests(LLAMA, POD, {}, _model("Ready", D1, deleting=True))
    with pytest.raises(Denied, match=r"^Model team-b/llama does not exist$"):
        allowed_manifests(LLAMA, POD, {}, None)


def test_a_digest_that_is_not_allowed_is_refused() -> None:
    check_manifest(LLAMA, POD, (D2, D1))
    with pytest.raises(Denied) as refused:
        check_manifest(LLAMA, POD, (D2, D3))
    assert str(refused.value) == (
        f"manifest {D1} is not the digest of Model team-b/llama that pod team-b/app-0 may "
        f"fetch ({D2}, {D3})"
    )


@pytest.mark.parametrize(
    "raw",
    ["", "not json", "{}", json.dumps([{"kind": "Model", "name": "llama", "digest": "sha256:x"}]),
     _digests(("ClusterModel", "llama", D1)), "[" * 10, "x" * (65 << 10)],
)  # fmt: skip
def test_a_malformed_or_foreign_digests_annotation_records_nothing(raw: str) -> None:
    assert recorded_digest({"ai.deckhouse.io/model-digests": raw}, "Model", "llama") is None


def test_manifest_blobs_are_the_config_and_layers_with_their_sizes() -> None:
    manifest = {
        "config": {"digest": D1, "size": 2},
        "layers": [{"digest": D2, "size": 10}, {"digest": "md5:x", "size": 1},
                   {"digest": D3, "size": -1}, {"digest": D3, "size": True}, "junk"],
    }  # fmt: skip
    assert manifest_blobs(json.dumps(manifest).encode()) == {
        D1: BlobRef(D1, 2),
        D2: BlobRef(D2, 10),
    }
    assert manifest_blobs(b"[]") == {}
    assert manifest_blobs(b"\xff") == {}
