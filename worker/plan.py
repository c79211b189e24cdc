"""What a source offers the rest of the worker: a plan of files, and their bytes.

Every provider (Hugging Face, Ollama, a local directory or file) resolves a user's source into a
``SourcePlan`` — the pinned revision and the files that make the model, each with its role in the
artifact and, when the provider states it in advance, its sha256 — and serves those files'
bytes two ways: ``byte_source`` for random access (header inspection by range reads) and
``stream`` for the transfer (sequential chunks, optionally from an offset to resume).

The inspection and the packing code see only these types, never a provider's client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from api.model import SourceType
from worker.inspect.reader import ByteSource

FileRole = Literal["weight", "config", "doc"]
"""Layer kind in the artifact: weights, config/tokenizer files, documentation (README, license)."""

WeightFormat = Literal["Safetensors", "GGUF", "Diffusers"]


@dataclass(frozen=True)
class PlannedFile:
    path: str
    """Path relative to the model root, '/'-separated, never absolute, never with '..'."""
    size: int
    role: FileRole
    sha256: str | None = None
    """Lower-case hex sha256 of the content when the source states it in advance."""


@dataclass(frozen=True)
class SourcePlan:
    url: str
    """The source as the user gave it."""
    source_type: SourceType | None
    """``None`` for a local path (no provider)."""
    revision: str | None
    """The pinned revision: a commit sha, a manifest digest; ``None`` for a local path."""
    name: str
    """A short model name for the artifact descriptor (repository or image name)."""
    format: WeightFormat
    files: tuple[PlannedFile, ...]
    notes: tuple[str, ...] = ()
    """Human-readable choices the plan made, e.g. which GGUF quantization it picked and why."""
    provider_tasks: tuple[str, ...] = ()
    """Provider-level task names (a Hub pipeline tag, …), for sourceCapabilities.tasks."""
    provider_features: tuple[str, ...] = ()
    """Provider-level feature names (Hub tags, Ollama capabilities), for sourceCapabilities."""
    canonical_url: str | None = None
    """The source spelled one way (``api.source``), recorded in the artifact instead of ``url``:
    two spellings of one source at one revision give one digest. None: ``url`` is recorded."""
    local: bool = False
    """The files are on a local disk: reading one twice costs a disk read, not a download, so
    publishing hashes each file before it sends anything (and sends nothing the target has)."""

    @property
    def recorded_url(self) -> str:
        """The source URL the artifact records."""
        return self.canonical_url or self.url

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> PlannedFile | None:
        return next((f for f in self.files if f.path == path), None)


class Source(Protocol):
    """One resolved provider source."""

    def plan(self) -> SourcePlan:
        """Resolves the revision and chooses the files (network: metadata only)."""
        ...

    def byte_source(self, path: str) -> ByteSource:
        """Random access to one planned file (remote: HTTP range requests)."""
        ...

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        """The file's bytes from ``offset`` to the end, in chunks of at most ``chunk_size``."""
        ...
