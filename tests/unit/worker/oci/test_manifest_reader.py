"""Pulled manifests are untrusted: paths must stay inside the directory, sizes be bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.errors import InvalidWeights
from worker.oci.manifest_reader import ArtifactLayer, check_relative_path, read_artifact_manifest

DIGEST = "sha256:" + "ab" * 32


def _manifest(*paths: Any, size: Any = 3, digest: str = DIGEST) -> bytes:
    layers = [
        {"mediaType": "x", "digest": digest, "size": size,
         "annotations": {"org.cncf.model.filepath": p}}
        for p in paths
    ]  # fmt: skip
    return json.dumps({"schemaVersion": 2, "layers": layers}).encode()


@pytest.mark.parametrize("path", ["model.safetensors", "1_Pooling/config.json", "a/b/c.d", "..a"])
def test_plain_relative_paths_are_accepted(path: str) -> None:
    assert check_relative_path(path, "ref") == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "absolute"),
        ("../outside", r"'\.\.' component"),
        ("a/../../b", r"'\.\.' component"),
        ("a/./b", r"'\.\.' component"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "NUL"),
        (".ai-models-partial/x", "reserved"),
        (".ai-models-materialized.json", "reserved"),
    ],
)
def test_escaping_or_odd_paths_are_refused(path: str, reason: str) -> None:
    with pytest.raises(InvalidWeights, match=reason):
        check_relative_path(path, "ref")


@pytest.mark.parametrize("path", [None, "", 7, "x" * 5000])
def test_missing_path_annotation_is_refused(path: object) -> None:
    with pytest.raises(InvalidWeights, match=r"org\.cncf\.model\.filepath"):
        check_relative_path(path, "ref")


def test_reads_layers() -> None:
    assert read_artifact_manifest(_manifest("a", "b/c"), "ref") == (
        ArtifactLayer("a", DIGEST, 3),
        ArtifactLayer("b/c", DIGEST, 3),
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "not JSON"),
        (b"[]", "not an OCI image manifest"),
        (json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json"}).encode(), "not an"),
        (json.dumps({"layers": []}).encode(), "no layers"),
        (_manifest("a", size=-1), "invalid size"),
        (_manifest("a", size=True), "invalid size"),
        (_manifest("a", size=1 << 60), "invalid size"),
        (_manifest("a", digest="sha256:zz"), "not sha256"),
        (_manifest("a", "a"), "same file path"),
        (_manifest("a", "a/b"), "both a file and a directory"),
        (_manifest("../x"), "refusing to write"),
    ],
)
def test_bad_manifests_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidWeights, match=reason):
        read_artifact_manifest(data, "ref")
