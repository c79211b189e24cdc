"""Reads an artifact manifest pulled from elsewhere: untrusted JSON, bounded and checked.

Only what materializing needs is read — each layer's digest, size, file path and whether it is
a raw file or a tar archive — and every path is checked to stay inside the destination directory
before any byte is written. The manifest is parsed within the shared bounds of ``oci.manifest``
(4 MiB, nesting depth 32, measured before ``json.loads`` sees it). Only ModelPack is read: the
config must be the ModelPack config, every layer one of the ModelPack layer media types
(``UnsupportedArtifact`` otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from oci import manifest
from oci.digest import is_digest
from oci.errors import BadResponse
from worker.errors import InvalidWeights, UnsupportedArtifact
from worker.oci.modelpack import (
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    FILEPATH_ANNOTATION,
    MANIFEST_MEDIA_TYPE,
)

MAX_LAYERS = 100_000
MAX_PATH_LENGTH = 4096
MAX_LAYER_SIZE = 1 << 50
LayerArchive = Literal["raw", "tar", "gzip", "zstd"]
"""How a layer holds its files: the file itself, or a tar (plain, gzip- or zstd-compressed)."""
_LAYER_KINDS = ("weight", "weight.config", "doc", "code", "dataset")
_ARCHIVES: dict[str, LayerArchive] = {
    "raw": "raw", "tar": "tar", "tar+gzip": "gzip", "tar+zstd": "zstd"
}  # fmt: skip
LAYER_MEDIA_TYPES: dict[str, LayerArchive] = {
    f"application/vnd.cncf.model.{kind}.v1.{suffix}": archive
    for kind in _LAYER_KINDS
    for suffix, archive in _ARCHIVES.items()
}
"""The ModelPack v1 layer media types (model-spec ``specs-go/v1/mediatype.go``)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
RESERVED_NAMES = frozenset({".ai-models-materialized.json", ".ai-models-materialized.json.tmp",
                            ".ai-models-partial"})  # fmt: skip
"""Names the materializer keeps for itself at the top of the directory."""


@dataclass(frozen=True)
class ArtifactLayer:
    path: str
    digest: str
    size: int
    archive: LayerArchive = "raw"


def check_relative_path(path: object, where: str) -> str:
    """``path`` if it is a plain relative '/'-separated path, else ``InvalidWeights``."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidWeights(f"{where}: a layer has no usable {FILEPATH_ANNOTATION} annotation")
    problem = None
    parts = path.split("/")
    if path.startswith("/"):
        problem = "is absolute"
    elif "\\" in path or "\x00" in path:
        problem = "contains a backslash or NUL"
    elif _CONTROL.search(path):
        problem = "contains a control character"
    elif any(part in ("", ".", "..") for part in parts):
        problem = "has an empty, '.' or '..' component"
    elif parts[0] in RESERVED_NAMES:
        problem = "uses a name reserved for the materializer's own files"
    if problem:
        raise InvalidWeights(f"{where}: file path {path!r} {problem}; refusing to write it")
    return path


def parse_bounded_json(data: bytes, where: str, what: str) -> Any:
    """``data`` as JSON once its size and nesting depth are known to be sane."""
    try:
        return manifest.parse_bounded_json(data, where, what)
    except BadResponse as error:
        raise InvalidWeights(error.message) from None


def read_artifact_manifest(data: bytes, where: str) -> tuple[ArtifactLayer, ...]:
    """The layers of a ModelPack manifest, with their file paths checked."""
    document = parse_bounded_json(data, where, "manifest")
    if not isinstance(document, dict) or document.get("mediaType", MANIFEST_MEDIA_TYPE) != (
        MANIFEST_MEDIA_TYPE
    ):
        raise InvalidWeights(f"{where}: not an OCI image manifest")
    _check_modelpack(document, where)
    raw_layers = document.get("layers")
    if not isinstance(raw_layers, list) or not 0 < len(raw_layers) <= MAX_LAYERS:
        raise InvalidWeights(f"{where}: the manifest has no layers (or more than {MAX_LAYERS})")
    layers = tuple(_layer(entry, where) for entry in raw_layers)
    _check_no_clashes(layers, where)
    return layers


def _layer(entry: Any, where: str) -> ArtifactLayer:
    if not isinstance(entry, dict):
        raise InvalidWeights(f"{where}: a layer is not an object")
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidWeights(f"{where}: layer digest {digest!r} is not sha256:<64 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_LAYER_SIZE:
        raise InvalidWeights(f"{where}: layer {digest} has an invalid size {size!r}")
    media_type = entry.get("mediaType")
    archive = LAYER_MEDIA_TYPES.get(media_type) if isinstance(media_type, str) else None
    if archive is None:
        raise UnsupportedArtifact(
            f"{where}: layer {digest} has the media type {str(media_type)[:200]!r}, not a "
            "ModelPack layer (application/vnd.cncf.model.<weight|weight.config|doc|code|"
            "dataset>.v1.<raw|tar|tar+gzip|tar+zstd>)"
        )
    annotations = entry.get("annotations")
    path = annotations.get(FILEPATH_ANNOTATION) if isinstance(annotations, dict) else None
    return ArtifactLayer(check_relative_path(path, where), digest, size, archive)


def _check_modelpack(document: dict[str, Any], where: str) -> None:
    config = document.get("config")
    media_type = config.get("mediaType") if isinstance(config, dict) else None
    if media_type != CONFIG_MEDIA_TYPE:
        raise UnsupportedArtifact(
            f"{where}: the config media type is {str(media_type)[:200]!r}, not {CONFIG_MEDIA_TYPE}:"
            " not a ModelPack artifact; publish it with ai-models prepare or modctl"
        )
    artifact_type = document.get("artifactType", ARTIFACT_TYPE)
    if artifact_type != ARTIFACT_TYPE:
        raise UnsupportedArtifact(
            f"{where}: the artifactType is {str(artifact_type)[:200]!r}, not {ARTIFACT_TYPE}"
        )


def _check_no_clashes(layers: tuple[ArtifactLayer, ...], where: str) -> None:
    paths = {layer.path for layer in layers}
    if len(paths) != len(layers):
        raise InvalidWeights(f"{where}: two layers have the same file path")
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) in paths:
                raise InvalidWeights(f"{where}: {parent} is both a file and a directory")
