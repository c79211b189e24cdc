"""The repositories the Hub emulator serves, and the JSON documents the Hub answers about them.

A ``HubRepo`` maps paths in the repository to files on disk (no copy of a real 98 MB model); it
computes what the Hub stores for each file — the git object id, and for LFS files (weights, or
anything of 10 MB and more) the sha256 and the pointer — and a deterministic commit sha.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.ground.models import RealModels

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".onnx", ".h5", ".msgpack")
LFS_MIN_SIZE = 10 << 20
CHUNK = 1 << 20


@dataclass(frozen=True)
class RepoFile:
    path: str
    source: Path
    size: int
    sha256: str
    git_oid: str
    lfs: bool

    @property
    def pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
            f"size {self.size}\n"
        ).encode()

    @property
    def lfs_info(self) -> dict[str, object]:
        return {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}


def _git_oid(content_prefix: bytes, size: int) -> hashlib._Hash:
    oid = hashlib.sha1()  # noqa: S324  (git's object id)
    oid.update(f"blob {size}\0".encode() + content_prefix)
    return oid


def repo_file(path: str, source: Path) -> RepoFile:
    size = source.stat().st_size
    sha256, oid = hashlib.sha256(), _git_oid(b"", size)
    with source.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            sha256.update(chunk)
            oid.update(chunk)
    lfs = path.lower().endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE
    entry = RepoFile(path, source, size, sha256.hexdigest(), oid.hexdigest(), lfs)
    if lfs:  # git stores the pointer; the tree's object id is the pointer's
        pointer = entry.pointer
        entry = RepoFile(
            path, source, size, entry.sha256, _git_oid(pointer, len(pointer)).hexdigest(), lfs
        )
    return entry


@dataclass
class HubRepo:
    repo_id: str
    files: Mapping[str, Path]
    """Path in the repository → file on disk."""
    private: bool = False
    gated: bool = False
    pipeline_tag: str | None = None
    tags: tuple[str, ...] = ()
    library_name: str | None = None
    refs: tuple[str, ...] = ("main",)
    """Branch and tag names that point to the (only) commit."""
    failure: int | None = None
    """When set, every request for this repository is answered with this HTTP status."""
    entries: dict[str, RepoFile] = field(default_factory=dict, init=False)
    commit: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.entries = {p: repo_file(p, s) for p, s in sorted(self.files.items())}
        listing = "".join(f"{e.path}\0{e.sha256}\n" for e in self.entries.values())
        digest = hashlib.sha1((self.repo_id + "\n" + listing).encode())  # noqa: S324
        self.commit = digest.hexdigest()

    @classmethod
    def from_dir(cls, repo_id: str, directory: Path, **options: object) -> HubRepo:
        files = {
            p.relative_to(directory).as_posix(): p
            for p in sorted(directory.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }
        return cls(repo_id, files, **options)  # type: ignore[arg-type]

    @property
    def weight_bytes(self) -> int:
        return sum(e.size for e in self.entries.values() if e.lfs)


def info_document(repo: HubRepo, blobs: bool) -> dict[str, object]:
    """``GET /api/models/{repo}/revision/{rev}``: the fields huggingface_hub's ModelInfo reads."""
    siblings: list[dict[str, object]] = []
    for e in repo.entries.values():
        sibling: dict[str, object] = {"rfilename": e.path}
        if blobs:
            sibling.update({"size": e.size, "blobId": e.git_oid})
            if e.lfs:
                sibling["lfs"] = {"sha256": e.sha256, "size": e.size, "pointerSize": len(e.pointer)}
        siblings.append(sibling)
    return {
        "_id": repo.commit[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": repo.commit,
        "private": repo.private,
        "gated": "manual" if repo.gated else False,
        "disabled": False,
        "lastModified": "2025-01-01T00:00:00.000Z",
        "createdAt": "2024-01-01T00:00:00.000Z",
        "downloads": 0,
        "likes": 0,
        "library_name": repo.library_name,
        "tags": list(repo.tags),
        "pipeline_tag": repo.pipeline_tag,
        "siblings": siblings,
        "spaces": [],
        "usedStorage": sum(e.size for e in repo.entries.values()),
    }


def tree_entries(repo: HubRepo, under: str, recursive: bool) -> list[dict[str, object]]:
    """``GET /api/models/{repo}/tree/{rev}[/{under}]``: folders first, then files, by path."""
    prefix = f"{under}/" if under else ""
    folders: set[str] = set()
    files: list[dict[str, object]] = []
    for entry in repo.entries.values():
        if not entry.path.startswith(prefix):
            continue
        relative = entry.path[len(prefix) :]
        parents = relative.split("/")[:-1]
        folders.update(prefix + "/".join(parents[:depth]) for depth in range(1, len(parents) + 1))
        if "/" in relative and not recursive:
            continue
        item: dict[str, object] = {"type": "file", "oid": entry.git_oid, "size": entry.size}
        item["path"] = entry.path
        if entry.lfs:
            item["lfs"] = entry.lfs_info
        files.append(item)
    shown = sorted(f for f in folders if recursive or "/" not in f[len(prefix) :])
    directories = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in shown]
    return [*directories, *files]


MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_TAGS = ("sentence-transformers", "pytorch", "safetensors", "bert", "feature-extraction",
               "sentence-similarity", "en", "license:apache-2.0")  # fmt: skip


def minilm_repo(real: RealModels, refs: tuple[str, ...] = ("main", "v1.0")) -> HubRepo:
    """The real MiniLM as the Hub lists it (tags, pipeline, library)."""
    return HubRepo.from_dir(
        MINILM,
        real.minilm_dir,
        pipeline_tag="sentence-similarity",
        tags=MINILM_TAGS,
        library_name="sentence-transformers",
        refs=refs,
    )
