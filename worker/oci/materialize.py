"""Pulls a ModelPack artifact, by digest, into a directory of verified files.

``ref`` is ``host[:port]/repository@sha256:<hex>`` (a registry) or ``<dir>@sha256:<hex>`` with an
absolute or ``./`` path (an OCI image layout). A reference without a digest is refused: the
webhook pins every consumer to a digest, and a tag could move between the init containers of
two replicas (``status.artifact.digest`` has the digest).

This runs as the init container of every consuming pod, against a manifest and a directory it
cannot trust: the manifest is read bounded (``manifest_reader``), tar layers are unpacked by a
bounded parser (``tar_layer``), and every file operation in the directory goes through
``safe_fs`` (no link or special file is ever followed). Each distinct blob is fetched once,
verified, and placed at every path that needs it (``materialize_writer``); what is complete is
journaled (``materialize_state``) so a re-run skips it without hashing again.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from oci.digest import is_digest, sha256_digest
from oci.errors import InvalidReference
from oci.manifest import MAX_MANIFEST_BYTES
from oci.reference import parse_reference
from oci.registry import RegistryClient, RegistrySettings
from worker.errors import InvalidWeights
from worker.oci.layout import OciLayout
from worker.oci.manifest_reader import ArtifactLayer, read_artifact_manifest
from worker.oci.materialize_state import STATE_FILE, StateJournal
from worker.oci.materialize_writer import (
    BLOB_PIECE_BYTES,
    PARTIAL_DIR,
    ArtifactOrigin,
    DirectoryWriter,
    MaterializedFile,
)
from worker.oci.modelpack import MANIFEST_MEDIA_TYPE
from worker.oci.registry_errors import mapped_chunks, registry_errors
from worker.oci.safe_fs import SafeDirectory, open_root
from worker.oci.target import connect, is_layout_path

__all__ = ["PARTIAL_DIR", "STATE_FILE", "Materialized", "MaterializedFile", "materialize"]


class _RegistryOrigin:
    def __init__(self, client: RegistryClient, repository: str) -> None:
        self._client = client
        self._repository = repository

    def manifest(self, digest: str) -> bytes:
        with registry_errors():
            return self._client.get_manifest(self._repository, digest, (MANIFEST_MEDIA_TYPE,)).data

    def blob_chunks(self, digest: str, offset: int) -> Iterator[bytes]:
        chunks = self._client.blob_chunks(self._repository, digest, offset, BLOB_PIECE_BYTES)
        return mapped_chunks(chunks)


class _LayoutOrigin:
    def __init__(self, layout: OciLayout) -> None:
        self._layout = layout

    def manifest(self, digest: str) -> bytes:
        try:
            with self._layout.blob_path(digest).open("rb") as file:
                data = file.read(MAX_MANIFEST_BYTES + 1)  # bounded: the layout is not ours
        except FileNotFoundError:
            raise InvalidWeights(f"{self._layout.root} has no manifest {digest}") from None
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidWeights(
                f"manifest {digest} in {self._layout.root} is larger than "
                f"{MAX_MANIFEST_BYTES:,} bytes"
            )
        if sha256_digest(data) != digest:
            raise InvalidWeights(f"manifest {digest} in {self._layout.root} is corrupt")
        return data

    def blob_chunks(self, digest: str, offset: int) -> Iterator[bytes]:
        if not self._layout.has_blob(digest):
            raise InvalidWeights(f"{self._layout.root} has no blob {digest}")
        return self._layout.blob_chunks(digest, offset)


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
    layers = read_artifact_manifest(origin.manifest(digest), ref)
    root = SafeDirectory(open_root(str(dest_dir)), str(dest_dir))
    try:
        journal = StateJournal(root)
        try:
            writer = DirectoryWriter(root, origin, ref, journal, _serialized(on_file))
            written = _write_all(writer, layers, concurrency)
        finally:
            journal.close()
        with contextlib.suppress(OSError):
            os.rmdir(PARTIAL_DIR, dir_fd=root.fd)  # only when empty
    finally:
        root.close()
    files = tuple(written[layer.path] for layer in layers)
    return Materialized(ref, digest, dest_dir, files)


def _serialized(
    on_file: Callable[[MaterializedFile], None] | None,
) -> Callable[[MaterializedFile], None]:
    lock = threading.Lock()

    def call(done: MaterializedFile) -> None:
        if on_file is not None:
            with lock:
                on_file(done)

    return call


def _write_all(
    writer: DirectoryWriter, layers: tuple[ArtifactLayer, ...], concurrency: int
) -> dict[str, MaterializedFile]:
    """One task per distinct digest; the first failure cancels the tasks not started yet."""
    by_digest: dict[str, list[ArtifactLayer]] = {}
    for layer in layers:
        by_digest.setdefault(layer.digest, []).append(layer)
    written: dict[str, MaterializedFile] = {}
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures: list[Future[list[MaterializedFile]]] = [
            pool.submit(writer.write, group) for group in by_digest.values()
        ]
        try:
            for future in futures:
                written.update((done.path, done) for done in future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return written
