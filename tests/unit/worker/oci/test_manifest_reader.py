"""Pulled manifests are untrusted: paths must stay inside the directory, sizes and nesting be
bounded, and only ModelPack config and layer media types are read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oci.manifest import MAX_MANIFEST_BYTES
from worker.errors import InvalidWeights, UnsupportedArtifact
from worker.oci.manifest_reader import ArtifactLayer, check_relative_path, read_artifact_manifest

DIGEST = "sha256:" + "ab" * 32


CONFIG = {"mediaType": "application/vnd.cncf.model.config.v1+json", "digest": DIGEST, "size": 2}
RAW = "application/vnd.cncf.model.weight.v1.raw"


def _manifest(
    *paths: Any, size: Any = 3, digest: str = DIGEST, media_type: str = RAW, **extra: Any
) -> bytes:
    layers = [
        {"mediaType": media_type, "digest": digest, "size": size,
         "annotations": {"org.cncf.model.filepath": p}}
        for p in paths
    ]  # fmt: skip
    return json.dumps({"schemaVersion": 2, "config": CONFIG, "layers": layers, **extra}).encode()


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
        ("model\n.safetensors", "control character"),
        ("a\tb", "control character"),
        ("a\x7fb", "control character"),
        ("a\x85b", "control character"),
        ("\x1b[31mred", "control character"),
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
        ArtifactLayer("a", DIGEST, 3, "raw"),
        ArtifactLayer("b/c", DIGEST, 3, "raw"),
    )


@pytest.mark.parametrize(
    ("media_type", "archive"),
    [
        ("application/vnd.cncf.model.weight.v1.raw", "raw"),
        ("application/vnd.cncf.model.weight.v1.tar", "tar"),
        ("application/vnd.cncf.model.weight.config.v1.tar+gzip", "gzip"),
        ("application/vnd.cncf.model.doc.v1.tar+zstd", "zstd"),
        ("application/vnd.cncf.model.code.v1.raw", "raw"),
        ("application/vnd.cncf.model.dataset.v1.tar", "tar"),
    ],
)
def test_modelpack_layer_media_types_are_read(media_type: str, archive: str) -> None:
    layers = read_artifact_manifest(_manifest("a", media_type=media_type), "ref")
    assert layers == (ArtifactLayer("a", DIGEST, 3, archive),)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.cncf.model.weight.v1.tar+bzip2",
        "application/vnd.cncf.model.weight.v2.raw",
        "application/vnd.ollama.image.model",
    ],
)
def test_other_layer_media_types_are_unsupported(media_type: str) -> None:
    with pytest.raises(UnsupportedArtifact) as caught:
        read_artifact_manifest(_manifest("a", media_type=media_type), "ref")
    assert caught.value.message == (
        f"ref: layer {DIGEST} has the media type {media_type!r}, not a ModelPack layer "
        "(application/vnd.cncf.model.<weight|weight.config|doc|code|dataset>.v1."
        "<raw|tar|tar+gzip|tar+zstd>)"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"config": {**CONFIG, "mediaType": "application/vnd.oci.image.config.v1+json"}},
         "ref: the config media type is 'application/vnd.oci.image.config.v1+json', not "
         "application/vnd.cncf.model.config.v1+json: not a ModelPack artifact; publish it with "
         "ai-models prepare or modctl"),
        ({"config": None},
         "ref: the config media type is 'None', not application/vnd.cncf.model.config.v1+json:"
         " not a ModelPack artifact; publish it with ai-models prepare or modctl"),
        ({"artifactType": "application/vnd.ollama.model"},
         "ref: the artifactType is 'application/vnd.ollama.model', not "
         "application/vnd.cncf.model.manifest.v1+json"),
    ],
)  # fmt: skip
def test_non_modelpack_artifacts_are_unsupported(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedArtifact) as caught:
        read_artifact_manifest(_manifest("a", **extra), "ref")
    assert caught.value.message == message


def test_a_deeply_nested_manifest_is_refused_before_parsing() -> None:
    deep = b'{"layers":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(InvalidWeights) as caught:
        read_artifact_manifest(deep, "ref")
    assert caught.value.message == "ref: the manifest nests deeper than 32 levels"


def test_an_oversized_manifest_is_refused_before_parsing() -> None:
    huge = _manifest("a", annotations={"pad": "x" * MAX_MANIFEST_BYTES})
    with pytest.raises(InvalidWeights) as caught:
        read_artifact_manifest(huge, "ref")
    assert caught.value.message == "ref: the manifest is larger than 4,194,304 bytes"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "not JSON"),
        (b"[]", "not an OCI image manifest"),
        (json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json"}).encode(), "not an"),
        (_manifest(), "no layers"),
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
