"""Mount candidates: Ready objects of the same source repository, any spelling, newest first."""

from __future__ import annotations

from typing import Any

from controller.mountfrom import MAX_CANDIDATES, mount_candidates
from controller.naming import Kind

MINILM = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"


def obj(
    name: str,
    url: str = MINILM,
    *,
    namespace: str = "team-a",
    phase: str = "Ready",
    created: str = "2026-11-30T00:00:00Z",
    digest: str | None = "sha256:" + "a" * 64,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if digest:
        status["artifact"] = {"kind": "OCI", "digest": digest}
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": {"source": {"url": url}},
        "status": status,
    }


def models(*objects: dict[str, Any], kind: Kind = "Model") -> list[tuple[Kind, dict[str, Any]]]:
    return [(kind, o) for o in objects]


def test_ready_objects_of_the_same_repository_in_any_spelling_newest_first() -> None:
    objects = [
        *models(
            obj("old", created="2026-11-01T00:00:00Z"),
            obj(
                "new",
                "https://hf.co/sentence-transformers/all-MiniLM-L6-v2/tree/v1.0",
                namespace="team-b",
                created="2026-11-29T00:00:00Z",
            ),
            obj("other-repo", "https://huggingface.co/org/other"),
            obj("publishing", phase="Publishing", digest=None),
            obj("failed", phase="Failed", digest=None),
            obj("self"),
        ),
        *models(obj("shared", namespace="", created="2026-11-15T00:00:00Z"), kind="ClusterModel"),
    ]
    got = mount_candidates(MINILM + "?revision=main", "uid-self", objects, "ai-models")
    assert got == (
        "ai-models/model/team-b/new",
        "ai-models/clustermodel/shared",
        "ai-models/model/team-a/old",
    )


def test_no_candidates_for_a_source_without_a_repository() -> None:
    objects = models(obj("upload", url="./local"), obj("a"))
    assert mount_candidates("./local", "uid-x", objects, "ai-models") == ()


def test_an_object_without_a_url_is_no_candidate() -> None:
    upload = obj("upload")
    upload["spec"]["source"] = {"upload": {}}
    assert mount_candidates(MINILM, "uid-x", models(upload), "ai-models") == ()


def test_candidates_are_bounded() -> None:
    objects = models(
        *(obj(f"m{i:02d}", created=f"2026-11-{i + 1:02d}T00:00:00Z") for i in range(20))
    )
    got = mount_candidates(MINILM, "uid-x", objects, "p")
    assert got == tuple(f"p/model/team-a/m{i:02d}" for i in range(19, 19 - MAX_CANDIDATES, -1))
