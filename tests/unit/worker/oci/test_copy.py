"""Copy by digest with an in-memory remote and a layout target: the manifest bytes unchanged,
blobs the target has are not read, other bytes than a digest names tag nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.errors import CatalogDigestMismatch, UnsupportedArtifact
from worker.oci.copy import CONFIG_NAME, copy_artifact
from worker.oci.layout import OciLayout
from worker.oci.modelpack import ARTIFACT_TYPE
from worker.oci.target import LayoutTarget

CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
RAW = "application/vnd.cncf.model.weight.v1.raw"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class MemoryRemote:
    def __init__(self, files: dict[str, bytes], config: bytes = b'{"config": {}}') -> None:
        self.blobs = {_sha(data): data for data in files.values()} | {_sha(config): config}
        self.document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": _sha(config), "size": len(config)},
            "layers": [
                {"mediaType": RAW, "digest": _sha(data), "size": len(data),
                 "annotations": {"org.cncf.model.filepath": path}}
                for path, data in files.items()
            ],
        }  # fmt: skip
        self.served_manifest: bytes | None = None
        self.tampered: set[str] = set()
        self.reads: list[tuple[str, int]] = []

    @property
    def data(self) -> bytes:
        return json.dumps(self.document).encode()

    @property
    def digest(self) -> str:
        return _sha(self.data)

    def manifest(self, digest: str) -> bytes:
        assert digest == self.digest
        return self.served_manifest or self.data

    def blob_chunks(self, digest: str, offset: int) -> Iterator[bytes]:
        self.reads.append((digest, offset))
        data = self.blobs[digest]
        if digest in self.tampered:
            data = bytes([data[0] ^ 1]) + data[1:]
        for start in range(offset, len(data), 1000):
            yield data[start : start + 1000]


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.total: int | None = None

    def __call__(self, total: int) -> Sink:
        self.total = total
        return self

    def stage(self, name: str) -> None:
        self.events.append(("stage", name))

    def file_started(self, path: str, size: int) -> None:
        self.events.append(("start", path))

    def advance(self, path: str, nbytes: int) -> None:
        pass

    def file_done(self, path: str, skipped: bool) -> None:
        self.events.append(("done", path, "skipped" if skipped else "sent"))


FILES = {"model.safetensors": b"W" * 2500, "copy.safetensors": b"W" * 2500, "README.md": b"# t"}


def _target(tmp_path: Path) -> LayoutTarget:
    return LayoutTarget(OciLayout(tmp_path / "out", create=True), "v1", ARTIFACT_TYPE)


def test_the_manifest_lands_unchanged_and_each_blob_moves_once(tmp_path: Path) -> None:
    remote, target, sink = MemoryRemote(FILES), _target(tmp_path), Sink()
    copied = copy_artifact(remote, remote.digest, target, progress=sink, where="here")

    assert copied.published.digest == remote.digest
    assert target.layout.resolve_tag("v1") == remote.digest
    assert target.layout.blob_path(remote.digest).read_bytes() == remote.data
    for digest, data in remote.blobs.items():
        assert target.layout.blob_path(digest).read_bytes() == data
    assert sorted(remote.reads) == sorted((digest, 0) for digest in remote.blobs)
    assert copied.published.size_bytes == sum(map(len, FILES.values())) + 14
    assert sink.total == 2500 + 3 + 14  # the shared weights counted once
    assert sink.events == [
        ("stage", "transfer"),
        ("start", "model.safetensors"), ("done", "model.safetensors", "sent"),
        ("start", "README.md"), ("done", "README.md", "sent"),
        ("stage", "config"),
        ("start", CONFIG_NAME), ("done", CONFIG_NAME, "sent"),
        ("stage", "manifest"),
    ]  # fmt: skip


def test_blobs_the_target_has_are_not_read(tmp_path: Path) -> None:
    remote, target = MemoryRemote(FILES), _target(tmp_path)
    weights = _sha(FILES["model.safetensors"])
    target.put_blob(lambda offset: [FILES["model.safetensors"][offset:]], 2500, weights, print)
    copied = copy_artifact(remote, remote.digest, target, progress=Sink(), where="here")
    assert weights not in [digest for digest, _ in remote.reads]
    assert copied.skipped == (weights,)
    assert len(copied.copied) == 2


def test_a_manifest_that_is_not_the_digest_is_refused_before_any_blob(tmp_path: Path) -> None:
    remote, target = MemoryRemote(FILES), _target(tmp_path)
    remote.served_manifest = remote.data.replace(b"README", b"READMF")
    with pytest.raises(CatalogDigestMismatch, match=f"hashes to .* not {remote.digest}"):
        copy_artifact(remote, remote.digest, target, progress=Sink(), where="here")
    assert remote.reads == []
    assert target.layout.resolve_tag("v1") is None


@pytest.mark.parametrize("which", ["README.md", "config"])
def test_a_blob_with_other_bytes_tags_nothing(tmp_path: Path, which: str) -> None:
    remote, target = MemoryRemote(FILES), _target(tmp_path)
    digest = remote.document["config"]["digest"] if which == "config" else _sha(FILES[which])
    remote.tampered.add(digest)
    with pytest.raises(CatalogDigestMismatch, match=f"{digest}.*nothing was tagged"):
        copy_artifact(remote, remote.digest, target, progress=Sink(), where="here")
    assert target.layout.resolve_tag("v1") is None
    assert not target.layout.has_blob(digest)


def test_an_artifact_that_is_not_modelpack_is_unsupported(tmp_path: Path) -> None:
    remote = MemoryRemote(FILES)
    remote.document["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json"
    with pytest.raises(UnsupportedArtifact, match="not a ModelPack artifact"):
        copy_artifact(remote, remote.digest, _target(tmp_path), progress=Sink(), where="here")
    assert remote.reads == []
