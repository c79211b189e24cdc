"""The upload source against a fake registry: single files are served by range reads and never
downloaded; archives are unpacked once into the workspace and planned like a local directory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from api.upload import worker_source
from oci.registry import RegistryClient
from tests.unit.worker.archive_builders import compress, member, tar_of
from worker.errors import InvalidSource, SourceNotFound, UploadRejected
from worker.sources import UploadSettings, UploadSource, UploadSpec, parse_source
from worker.sources.upload import MAX_EXPANDED_ENV


class FakeRegistry:
    def __init__(self, blob: bytes | None) -> None:
        self.blob = blob
        self.calls: list[str] = []

    def blob_size(self, repository: str, digest: str) -> int | None:
        self.calls.append("HEAD")
        return None if self.blob is None else len(self.blob)

    def blob_range(self, repository: str, digest: str, offset: int, length: int) -> bytes:
        assert self.blob is not None
        self.calls.append(f"RANGE {offset}+{length}")
        return self.blob[offset : offset + length]

    def blob_chunks(
        self, repository: str, digest: str, offset: int = 0, chunk_size: int | None = None
    ) -> Iterator[bytes]:
        assert self.blob is not None
        self.calls.append(f"GET {offset}")
        yield from (self.blob[i : i + 4096] for i in range(offset, len(self.blob), 4096))


def _source(
    blob: bytes | None, filename: str, workspace: Path | None = None
) -> tuple[UploadSource, FakeRegistry]:
    digest = "sha256:" + hashlib.sha256(blob or b"").hexdigest()
    spec = parse_source(
        worker_source("registry.local:5000", "ai-models/upload/s1", digest, filename)
    )
    assert isinstance(spec, UploadSpec)
    fake = FakeRegistry(blob)
    settings = UploadSettings(workspace=workspace)
    return UploadSource(spec, settings, cast(RegistryClient, fake)), fake


def test_the_upload_spec_is_parsed_and_a_bad_one_is_invalid_source() -> None:
    digest = "sha256:" + "a" * 64
    spec = parse_source(worker_source("r.local", "p/upload/s", digest, "my model.tar.gz"))
    assert spec == UploadSpec(
        url=f"upload+oci://r.local/p/upload/s@{digest}?filename=my%20model.tar.gz",
        registry_host="r.local",
        repository="p/upload/s",
        digest=digest,
        filename="my model.tar.gz",
        format="tar.gz",
    )
    assert spec.canonical_url == "upload:my%20model.tar.gz"
    with pytest.raises(InvalidSource, match=r"the uploaded file name is not accepted: 'x\.rar'"):
        parse_source(f"upload+oci://r.local/p/upload/s@{digest}?filename=x.rar")


def test_a_gguf_is_planned_with_the_blob_digest_and_never_downloaded() -> None:
    blob = b"GGUF" + bytes(100)
    source, fake = _source(blob, "tiny.gguf")
    plan = source.plan()
    hex_digest = hashlib.sha256(blob).hexdigest()
    assert (plan.source_type, plan.revision, plan.name, plan.format) == (
        "Upload", f"sha256:{hex_digest}", "tiny", "GGUF"
    )  # fmt: skip
    assert [(f.path, f.size, f.role, f.sha256) for f in plan.files] == [
        ("tiny.gguf", 104, "weight", hex_digest)
    ]
    assert source.byte_source("tiny.gguf").read_at(0, 4) == b"GGUF"
    assert fake.calls == ["HEAD", "RANGE 0+4"]
    assert b"".join(source.stream("tiny.gguf", 100)) == bytes(4)


def test_a_safetensors_alone_says_its_config_is_missing() -> None:
    source, _ = _source(b"\x00" * 16, "weights.safetensors")
    plan = source.plan()
    assert plan.format == "Safetensors"
    assert plan.notes == (
        "weights.safetensors was uploaded alone: config.json is missing, so the architecture, "
        "family and context window stay unknown; upload the model's directory (or an archive "
        "of it) to have them",
    )


def test_a_missing_blob_is_source_not_found() -> None:
    source, _ = _source(None, "tiny.gguf")
    with pytest.raises(SourceNotFound, match="the upload session was cleaned up"):
        source.plan()


def _model_tar_gz() -> bytes:
    files = [("m/config.json", b'{"model_type": "bert"}'), ("m/model.safetensors", b"x" * 10)]
    return compress(tar_of([member(n, d) for n, d in files]), "tar.gz")


def test_an_archive_is_unpacked_once_and_planned_as_a_directory(tmp_path: Path) -> None:
    blob = _model_tar_gz()
    source, fake = _source(blob, "m.tar.gz", tmp_path)
    plan = source.plan()
    assert (plan.source_type, plan.revision, plan.name, plan.local) == (
        "Upload", "sha256:" + hashlib.sha256(blob).hexdigest(), "m", True
    )  # fmt: skip
    assert sorted(f.path for f in plan.files) == ["config.json", "model.safetensors"]
    assert b"".join(source.stream("model.safetensors")) == b"x" * 10
    assert fake.calls == ["HEAD", "GET 0"]
    again, fake_again = _source(blob, "m.tar.gz", tmp_path)
    assert again.plan().files == plan.files
    assert fake_again.calls == ["HEAD"]  # the retried pod keeps what was unpacked


def test_a_rejected_archive_leaves_nothing_in_the_workspace(tmp_path: Path) -> None:
    blob = tar_of([member("m/a", b"x"), member("m/link", kind=b"2", link="/etc/passwd")])
    source, _ = _source(blob, "m.tar", tmp_path)
    with pytest.raises(UploadRejected, match=r"^m\.tar: member 'm/link' is a symlink"):
        source.plan()
    assert list(tmp_path.iterdir()) == []


def test_the_expanded_limit_comes_from_the_environment(tmp_path: Path) -> None:
    environ = {MAX_EXPANDED_ENV: "1000", "AI_MODELS_WORKSPACE": str(tmp_path)}
    settings = UploadSettings.from_env({"insecure": True}, environ)
    assert (settings.limits.max_expanded_bytes, settings.workspace) == (1000, tmp_path)
    assert cast(dict[str, Any], settings.registry) == {"insecure": True}
    assert UploadSettings.from_env(environ={MAX_EXPANDED_ENV: "x"}).limits.max_expanded_bytes == (
        1 << 40
    )
