"""Pulls a ModelPack artifact, by digest, into a directory of verified files.

``ref`` is ``host[:port]/repository@sha256:<hex>`` (a registry) or ``<dir>@sha256:<hex>`` with an
absolute or ``./`` path (an OCI image layout). A reference without a digest is refused: the
webhook pins every consumer to a digest, and a tag could move between the init containers of
two replicas (``status.artifact.digest`` has the digest).

Each layer lands at its ``org.cncf.model.filepath`` annotation, which must be a plain relative
path inside the directory (no absolute path, no ``..``, no way out through a symlink). Its bytes
stream into ``.ai-models-partial/<hex>`` while being hashed, and the file is renamed into place
only when size and sha256 match the manifest. A re-run resumes: a partial file continues where
it stops, and a complete file recorded in ``.ai-models-materialized.json`` with the same digest,
size and mtime is skipped without being hashed again (an unrecorded file of the right size is
hashed once and then recorded).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from worker.errors import InvalidWeights
from worker.oci.content import DigestMismatch, hex_of, is_digest, sha256_digest
from worker.oci.layout import OciLayout
from worker.oci.manifest_reader import ArtifactLayer, read_artifact_manifest
from worker.oci.modelpack import MANIFEST_MEDIA_TYPE
from worker.oci.reference import InvalidReference, parse_reference
from worker.oci.registry import RegistryClient, RegistrySettings
from worker.oci.target import connect, is_layout_path

STATE_FILE = ".ai-models-materialized.json"
PARTIAL_DIR = ".ai-models-partial"
_HASH_READ = 8 << 20


class ArtifactOrigin(Protocol):
    def manifest(self, digest: str) -> bytes: ...

    def blob_chunks(self, digest: str, offset: int) -> Iterator[bytes]: ...


class _RegistryOrigin:
    def __init__(self, client: RegistryClient, repository: str) -> None:
        self._client = client
        self._repository = repository

    def manifest(self, digest: str) -> bytes:
        return self._client.get_manifest(self._repository, digest, (MANIFEST_MEDIA_TYPE,)).data

    def blob_chunks(self, digest: str, offset: int) -> Iterator[bytes]:
        return self._client.blob_chunks(self._repository, digest, offset)


class _LayoutOrigin:
    def __init__(self, layout: OciLayout) -> None:
        self._layout = layout

    def manifest(self, digest: str) -> bytes:
        try:
            data = self._layout.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise InvalidWeights(f"{self._layout.root} has no manifest {digest}") from None
        if sha256_digest(data) != digest:
            raise InvalidWeights(f"manifest {digest} in {self._layout.root} is corrupt")
        return data

    def blob_chunks(self, digest: str, offset: int) -> Iterator[bytes]:
        if not self._layout.has_blob(digest):
            raise InvalidWeights(f"{self._layout.root} has no blob {digest}")
        return self._layout.blob_chunks(digest, offset)


@dataclass(frozen=True)
class MaterializedFile:
    path: str
    digest: str
    size: int
    skipped: bool
    """True when the file was already complete and verified."""


@dataclass(frozen=True)
class Materialized:
    reference: str
    digest: str
    directory: Path
    files: tuple[MaterializedFile, ...]


def open_origin(
    ref: str,
    *,
    insecure: bool = False,
    ca_file: Path | None = None,
    auth_file: Path | None = None,
    settings: RegistrySettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ArtifactOrigin, str]:
    """Where ``ref`` points and the manifest digest it pins."""
    location, at, digest = ref.rpartition("@")
    if is_layout_path(ref):
        if not at or not is_digest(digest):
            raise InvalidReference(f"{ref!r}: expected <layout dir>@sha256:<64 hex>")
        return _LayoutOrigin(OciLayout(Path(location), create=False)), digest
    reference = parse_reference(ref)
    if reference.digest is None:
        raise InvalidReference(
            f"{ref!r} has no digest: materialize pulls by digest only "
            "(host/repository@sha256:<64 hex>; the digest is in status.artifact.digest)"
        )
    client = connect(
        reference, insecure=insecure, ca_file=ca_file, auth_file=auth_file, settings=settings,
        sleep=sleep,
    )  # fmt: skip
    return _RegistryOrigin(client, reference.repository), reference.digest


def materialize(
    ref: str,
    dest_dir: Path,
    *,
    insecure: bool = False,
    ca_file: Path | None = None,
    auth_file: Path | None = None,
    settings: RegistrySettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
    concurrency: int = 3,
    on_file: Callable[[MaterializedFile], None] | None = None,
) -> Materialized:
    """Pulls the artifact ``ref`` names into ``dest_dir``; returns what it wrote or kept.

    ``on_file`` is told about each file as it completes (calls are serialized).
    """
    origin, digest = open_origin(
        ref, insecure=insecure, ca_file=ca_file, auth_file=auth_file, settings=settings,
        sleep=sleep,
    )  # fmt: skip
    layers = read_artifact_manifest(origin.manifest(digest), f"{ref}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    writer = _DirectoryWriter(dest_dir, origin, ref, on_file or (lambda _: None))
    targets = [(layer, writer.destination(layer)) for layer in layers]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(writer.write, layer, path) for layer, path in targets]
        files = tuple(future.result() for future in futures)
    with contextlib.suppress(OSError):
        (dest_dir / PARTIAL_DIR).rmdir()  # only when empty
    return Materialized(ref, digest, dest_dir, files)


class _DirectoryWriter:
    def __init__(
        self,
        root: Path,
        origin: ArtifactOrigin,
        ref: str,
        on_file: Callable[[MaterializedFile], None],
    ) -> None:
        self._on_file = on_file
        self._root = root
        self._real_root = root.resolve()
        self._origin = origin
        self._ref = ref
        self._lock = threading.Lock()
        self._state = _load_state(root / STATE_FILE)

    def destination(self, layer: ArtifactLayer) -> Path:
        path = self._root / layer.path
        # The lexical check is in read_artifact_manifest; this one catches symlinks already in
        # the directory that would lead a write outside it.
        if not path.parent.resolve().is_relative_to(self._real_root) or path.is_symlink():
            raise InvalidWeights(f"{layer.path}: leads outside {self._root} through a symlink")
        return path

    def write(self, layer: ArtifactLayer, path: Path) -> MaterializedFile:
        done = self._write(layer, path)
        with self._lock:
            self._on_file(done)
        return done

    def _write(self, layer: ArtifactLayer, path: Path) -> MaterializedFile:
        if self._is_complete(layer, path):
            return MaterializedFile(layer.path, layer.digest, layer.size, True)
        partial = self._root / PARTIAL_DIR / hex_of(layer.digest)
        partial.parent.mkdir(exist_ok=True)
        try:
            self._download(layer, partial)
        except DigestMismatch as mismatch:
            partial.unlink(missing_ok=True)
            raise InvalidWeights(
                f"{layer.path}: blob {layer.digest} from {self._ref} has {mismatch.what} "
                f"{mismatch.actual}, the manifest says {mismatch.expected}: the stored copy is "
                "corrupt; republish the model"
            ) from None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.chmod(0o644)
        os.replace(partial, path)
        self._record(layer, path)
        return MaterializedFile(layer.path, layer.digest, layer.size, False)

    def _is_complete(self, layer: ArtifactLayer, path: Path) -> bool:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        if stat.st_size != layer.size:
            return False
        recorded = self._state.get(layer.path)
        if recorded == {"digest": layer.digest, "size": layer.size, "mtimeNs": stat.st_mtime_ns}:
            return True
        hasher = hashlib.sha256()
        with path.open("rb") as file:
            while piece := file.read(_HASH_READ):
                hasher.update(piece)
        if "sha256:" + hasher.hexdigest() != layer.digest:
            return False
        self._record(layer, path)
        return True

    def _download(self, layer: ArtifactLayer, partial: Path) -> None:
        hasher = hashlib.sha256()
        offset = 0
        if partial.is_file() and partial.stat().st_size <= layer.size:
            with partial.open("rb") as file:
                while piece := file.read(_HASH_READ):
                    hasher.update(piece)
                    offset += len(piece)
        with partial.open("r+b" if offset else "wb") as file:
            file.seek(offset)
            for piece in self._origin.blob_chunks(layer.digest, offset):
                offset += len(piece)
                if offset > layer.size:
                    raise DigestMismatch(str(layer.size), f"more than {layer.size} bytes", "size")
                hasher.update(piece)
                file.write(piece)
            file.flush()
            os.fsync(file.fileno())
        if offset != layer.size:
            raise DigestMismatch(str(layer.size), str(offset), "size")
        actual = "sha256:" + hasher.hexdigest()
        if actual != layer.digest:
            raise DigestMismatch(layer.digest, actual, "sha256")

    def _record(self, layer: ArtifactLayer, path: Path) -> None:
        entry = {"digest": layer.digest, "size": layer.size, "mtimeNs": path.stat().st_mtime_ns}
        with self._lock:
            self._state[layer.path] = entry
            temporary = self._root / f"{STATE_FILE}.tmp"
            temporary.write_text(json.dumps(self._state, sort_keys=True, indent=1))
            os.replace(temporary, self._root / STATE_FILE)


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}
