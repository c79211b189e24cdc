"""Builds OCI image layouts by hand for the materialize tests: any manifest, any layer bytes and
media types (good, odd or hostile), and tar layers made with the standard ``tarfile``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.cncf.model.config.v1+json"
ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
RAW = "application/vnd.cncf.model.weight.v1.raw"
TAR = "application/vnd.cncf.model.weight.v1.tar"
TAR_GZIP = "application/vnd.cncf.model.weight.v1.tar+gzip"
TAR_ZSTD = "application/vnd.cncf.model.weight.config.v1.tar+zstd"
FILEPATH = "org.cncf.model.filepath"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    path: str
    data: bytes
    media_type: str = RAW


def put_blob(root: Path, data: bytes) -> str:
    digest = sha256(data)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest[7:]).write_bytes(data)
    return digest


def manifest_document(root: Path, layers: Sequence[Layer], config: bytes = b"{}") -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": ARTIFACT,
        "config": {"mediaType": CONFIG, "digest": put_blob(root, config), "size": len(config)},
        "layers": [
            {
                "mediaType": layer.media_type,
                "digest": put_blob(root, layer.data),
                "size": len(layer.data),
                "annotations": {FILEPATH: layer.path},
            }
            for layer in layers
        ],
    }


def write_manifest(root: Path, data: bytes) -> str:
    """Stores ``data`` as the layout's only manifest; returns ``<root>@<digest>``."""
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    digest = put_blob(root, data)
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": MANIFEST, "digest": digest, "size": len(data)}
    ]}  # fmt: skip
    (root / "index.json").write_text(json.dumps(index))
    return f"{root}@{digest}"


def write_layout(
    root: Path,
    layers: Sequence[Layer],
    edit: Callable[[dict[str, Any]], None] = lambda _: None,
) -> str:
    """A layout holding one ModelPack artifact of ``layers``; ``edit`` may spoil its manifest."""
    root.mkdir(parents=True, exist_ok=True)
    document = manifest_document(root, layers)
    edit(document)
    return write_manifest(root, json.dumps(document).encode())


def tar_of(
    members: Sequence[tarfile.TarInfo | tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT
) -> bytes:
    """A tar stream of ``(name, data)`` files and prepared ``TarInfo`` entries (links…)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o4755  # setuid: must not survive unpacking
                archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def special(name: str, kind: bytes, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size
    return info


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative path → bytes), the materializer's own
    bookkeeping left out."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and not path.name.startswith(".ai-models")
    }
