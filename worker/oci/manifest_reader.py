"""Reads an artifact manifest pulled from elsewhere: untrusted JSON, bounded and checked.

Only what materializing needs is read — each layer's digest, size and file path — and every
path is checked to stay inside the destination directory before any byte is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from worker.errors import InvalidWeights
from worker.oci.content import is_digest
from worker.oci.modelpack import FILEPATH_ANNOTATION, MANIFEST_MEDIA_TYPE

MAX_LAYERS = 100_000
MAX_PATH_LENGTH = 4096
MAX_LAYER_SIZE = 1 << 50
RESERVED_NAMES = frozenset({".ai-models-materialized.json", ".ai-models-materialized.json.tmp",
                            ".ai-models-partial"})  # fmt: skip
"""Names the materializer keeps for itself at the top of the directory."""


@dataclass(frozen=True)
class ArtifactLayer:
    path: str
    digest: str
    size: int


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
    elif any(part in ("", ".", "..") for part in parts):
        problem = "has an empty, '.' or '..' component"
    elif parts[0] in RESERVED_NAMES:
        problem = "uses a name reserved for the materializer's own files"
    if problem:
        raise InvalidWeights(f"{where}: file path {path!r} {problem}; refusing to write it")
    return path


def read_artifact_manifest(data: bytes, where: str) -> tuple[ArtifactLayer, ...]:
    """The layers of a ModelPack-style manifest, with their file paths checked."""
    try:
        document = json.loads(data)
    except ValueError as error:
        raise InvalidWeights(f"{where}: the manifest is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("mediaType", MANIFEST_MEDIA_TYPE) != (
        MANIFEST_MEDIA_TYPE
    ):
        raise InvalidWeights(f"{where}: not an OCI image manifest")
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
    annotations = entry.get("annotations")
    path = annotations.get(FILEPATH_ANNOTATION) if isinstance(annotations, dict) else None
    return ArtifactLayer(check_relative_path(path, where), digest, size)


def _check_no_clashes(layers: tuple[ArtifactLayer, ...], where: str) -> None:
    paths = {layer.path for layer in layers}
    if len(paths) != len(layers):
        raise InvalidWeights(f"{where}: two layers have the same file path")
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) in paths:
                raise InvalidWeights(f"{where}: {parent} is both a file and a directory")
