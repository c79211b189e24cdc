"""A committed upload as a ``Source``: one blob in the session's staging repository.

The preparation Job names it ``upload+oci://<host>/<staging repository>@sha256:<hex>?filename=``
(``api.upload``); the blob is read with the shared registry client, with the credentials and TLS
settings of publishing (the staging repository is in the cluster's own registry).

- ``.gguf`` / ``.safetensors``: the blob is the model's one file, named ``filename``. Nothing is
  downloaded: inspection reads its header with range requests, and its sha256 is the blob's
  digest, so publishing finds it in the staging repository (``AI_MODELS_MOUNT_FROM``) and mounts
  it instead of sending it again. A ``.safetensors`` alone has no ``config.json``: the plan says
  so in a note, and the metadata it would give stays unknown (``MetadataPartial``).
- archives: unpacked into the workspace (``AI_MODELS_WORKSPACE``) by the bounded unpacker
  (``worker/archive.py``): a tar as it streams from the registry, a zip from a copy spooled
  first (it needs random access). Both are verified against the digest. The directory is then
  a local directory source — the same selection, inspection and digests as any other path.
  An unpacked upload is kept with a marker, so a retried pod does not unpack it again.

The plan says ``Upload`` with the blob digest as its revision, whatever the content.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from api.protocol import ENV_AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES, ENV_AI_MODELS_WORKSPACE
from oci.digest import hex_of
from oci.reference import Reference
from oci.registry import RegistryClient
from worker.archive import ArchiveLimits, Unpacked, unpack_tar
from worker.archive_streams import RawStream, TarKind
from worker.archive_zip import unpack_zip
from worker.errors import AmbiguousFormat, InvalidWeights, NoSupportedWeights, SourceNotFound
from worker.inspect.reader import ByteSource
from worker.oci.registry_errors import mapped_chunks, registry_errors
from worker.oci.target import connect
from worker.plan import PlannedFile, SourcePlan, WeightFormat
from worker.sources.local import LocalSource
from worker.sources.ranged import RangedByteSource
from worker.sources.spec import LocalSpec, UploadSpec

MAX_EXPANDED_ENV = ENV_AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES
"""All members of an uploaded archive together may unpack to at most this many bytes."""
_SINGLE_FORMATS: dict[str, WeightFormat] = {"gguf": "GGUF", "safetensors": "Safetensors"}
_SUFFIXES = (".tar.gz", ".tar.zst", ".tgz", ".tar", ".zip")
# Beside the model's directory, whose name never starts with a dot (``_stem``).
_MARKER = ".unpacked.json"
_SPOOL = ".archive.zip"
_TAR_KINDS: dict[str, TarKind] = {"tar": "tar", "tar.gz": "tar.gz", "tar.zst": "tar.zst"}
_SPOOL_PIECE = 1 << 20
log = structlog.get_logger("upload")


@dataclass(frozen=True)
class UploadSettings:
    registry: Mapping[str, Any] = field(default_factory=dict)
    """Keywords of ``worker.oci.target.connect``: the registry credentials and TLS of publishing."""
    workspace: Path | None = None
    """Where archives are unpacked; a temporary directory when None (a laptop)."""
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)

    @classmethod
    def from_env(
        cls, registry: Mapping[str, Any] | None = None, environ: Mapping[str, str] = os.environ
    ) -> UploadSettings:
        workspace = environ.get(ENV_AI_MODELS_WORKSPACE)
        limits = ArchiveLimits()
        expanded = environ.get(MAX_EXPANDED_ENV, "").strip()
        if expanded.isdigit() and int(expanded) > 0:
            limits = replace(limits, max_expanded_bytes=int(expanded))
        return cls(dict(registry or {}), Path(workspace) if workspace else None, limits)


class UploadSource:
    def __init__(
        self, spec: UploadSpec, settings: UploadSettings, client: RegistryClient | None = None
    ) -> None:
        self._spec = spec
        self._settings = settings
        self._client = client
        self._plan: SourcePlan | None = None
        self._unpacked: LocalSource | None = None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None

    def plan(self) -> SourcePlan:
        if self._plan is None:
            self._plan = self._resolve()
        return self._plan

    def byte_source(self, path: str) -> ByteSource:
        planned = self._planned(path)
        if self._unpacked is not None:
            return self._unpacked.byte_source(path)
        return RangedByteSource(path, planned.size, self._range)

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        self._planned(path)
        if self._unpacked is not None:
            return self._unpacked.stream(path, offset, chunk_size)
        spec = self._spec
        chunks = self._registry().blob_chunks(spec.repository, spec.digest, offset, chunk_size)
        return mapped_chunks(chunks)

    # ---- the plan --------------------------------------------------------------------------

    def _resolve(self) -> SourcePlan:
        spec = self._spec
        size = self._blob_size()
        fmt = _SINGLE_FORMATS.get(spec.format)
        if fmt is not None:
            return self._single_file(fmt, size)
        root = self._unpack(size)
        self._unpacked = LocalSource(LocalSpec(url=spec.url, path=root))
        try:
            plan = self._unpacked.plan()
        except (NoSupportedWeights, AmbiguousFormat, InvalidWeights) as error:
            # Named after the upload, not the workspace path the user never saw.
            named = error.message.replace(str(root), spec.filename)
            raise type(error)(named) from error
        return replace(
            plan, source_type="Upload", revision=spec.digest, canonical_url=spec.canonical_url
        )

    def _single_file(self, fmt: WeightFormat, size: int) -> SourcePlan:
        spec = self._spec
        notes: tuple[str, ...] = ()
        if fmt == "Safetensors":
            notes = (
                f"{spec.filename} was uploaded alone: config.json is missing, so the "
                "architecture, family and context window stay unknown; upload the model's "
                "directory (or an archive of it) to have them",
            )
        planned = PlannedFile(spec.filename, size, "weight", sha256=hex_of(spec.digest))
        return SourcePlan(
            url=spec.url,
            source_type="Upload",
            revision=spec.digest,
            name=spec.filename.rsplit(".", 1)[0],
            format=fmt,
            files=(planned,),
            notes=notes,
            canonical_url=spec.canonical_url,
        )

    def _planned(self, path: str) -> PlannedFile:
        planned = self.plan().file(path)
        if planned is None:
            raise KeyError(f"{path} is not a file of the plan for {self._spec.url}")
        return planned

    # ---- the registry ----------------------------------------------------------------------

    def _registry(self) -> RegistryClient:
        if self._client is None:
            spec = self._spec
            reference = Reference(spec.registry_host, spec.repository, digest=spec.digest)
            self._client = connect(reference, **self._settings.registry)
        return self._client

    def _blob_size(self) -> int:
        spec = self._spec
        with registry_errors():
            size = self._registry().blob_size(spec.repository, spec.digest)
        if size is None:
            raise SourceNotFound(
                f"the uploaded blob {spec.digest} is not in {spec.registry_host}/"
                f"{spec.repository} (the upload session was cleaned up?)"
            )
        return size

    def _range(self, offset: int, length: int) -> bytes:
        spec = self._spec
        with registry_errors():
            return self._registry().blob_range(spec.repository, spec.digest, offset, length)

    def _raw(self, size: int) -> RawStream:
        spec = self._spec
        chunks = mapped_chunks(self._registry().blob_chunks(spec.repository, spec.digest))
        zstd = spec.format == "tar.zst"
        return RawStream(chunks, size=size, digest=spec.digest, where=spec.filename, zstd=zstd)

    # ---- unpacking -------------------------------------------------------------------------

    def _workspace(self) -> Path:
        if self._settings.workspace is not None:
            return self._settings.workspace
        if self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="ai-models-upload-")
        return Path(self._temporary.name)

    def _unpack(self, size: int) -> Path:
        spec = self._spec
        base = self._workspace() / f"upload-{hex_of(spec.digest)}"
        kept = _kept_root(base)
        if kept is not None:
            log.info("unpacked upload kept from an earlier attempt", directory=str(kept))
            return kept
        shutil.rmtree(base, ignore_errors=True)  # a partial unpack of a killed attempt
        base.mkdir(parents=True)
        dest = base / _stem(spec.filename)
        try:
            unpacked = self._unpack_into(dest, size)
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        relative = unpacked.root.relative_to(base).as_posix()
        (base / _MARKER).write_text(json.dumps({"root": relative}))
        log.info("unpacked upload", files=unpacked.files, bytes=unpacked.bytes, root=relative)
        return unpacked.root

    def _unpack_into(self, dest: Path, size: int) -> Unpacked:
        spec, limits = self._spec, self._settings.limits
        raw = self._raw(size)
        if spec.format == "zip":
            spooled = dest.parent / _SPOOL
            with spooled.open("wb") as file:
                while piece := raw.read(_SPOOL_PIECE):
                    file.write(piece)
            raw.finish()
            unpacked = unpack_zip(spooled, dest, spec.filename, limits)
            spooled.unlink()
            return unpacked
        unpacked = unpack_tar(raw, _TAR_KINDS[spec.format], dest, spec.filename, limits)
        raw.finish()
        return unpacked


def _kept_root(base: Path) -> Path | None:
    """The model directory an earlier attempt unpacked completely, if one did."""
    try:
        relative = json.loads((base / _MARKER).read_text())["root"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    root = base / str(relative)
    if ".." in Path(str(relative)).parts or not root.is_dir() or root.is_symlink():
        return None
    return root


def _stem(filename: str) -> str:
    """The archive's name without its suffix: the model's name when its files are at the root."""
    lower = filename.lower()
    stem = next((filename[: -len(s)] for s in _SUFFIXES if lower.endswith(s)), filename)
    return stem if stem and not stem.startswith(".") else "model"
