"""The transfer engine with in-memory sources and targets: stages and progress, skipping known
blobs without reading them, de-duplication, errors that name the file, stopping on failure."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.model import ResolvedMetadata
from oci.reference import Reference
from oci.registry import RegistryClient, RegistrySettings
from tests.unit.oci.fakes import FakeClock, FakeTransport, MemoryRegistry
from worker.errors import InvalidWeights, RegistryUnavailable, SourceUnavailable
from worker.inspect.reader import ByteSource
from worker.oci.layout import OciLayout
from worker.oci.modelpack import ARTIFACT_TYPE
from worker.oci.publish import Interrupted, PublishedArtifact, publish
from worker.oci.target import ArtifactTarget, LayoutTarget, RegistryTarget
from worker.plan import PlannedFile, SourcePlan

FILES = {
    "model.safetensors": b"W" * 5000,
    "config.json": b'{"model_type": "llama"}',
    "copy.safetensors": b"W" * 5000,
    "README.md": b"# tiny",
}
RESOLVED = ResolvedMetadata(architecture="llama", format="Safetensors")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plan(lie_about: str | None = None) -> SourcePlan:
    roles = {"model.safetensors": "weight", "copy.safetensors": "weight", "config.json": "config"}
    files = []
    for path, data in FILES.items():
        known = _sha(data) if path.endswith(".safetensors") else None
        if path == lie_about:
            known = "0" * 64
        files.append(PlannedFile(path, len(data), roles.get(path, "doc"), known))  # type: ignore[arg-type]
    return SourcePlan(
        "https://hf.co/org/tiny", "HuggingFace", "c0ffee", "tiny", "Safetensors", tuple(files)
    )


class MemorySource:
    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.streamed: dict[str, int] = {}
        self.lock = threading.Lock()

    def plan(self) -> SourcePlan:
        return _plan()

    def byte_source(self, path: str) -> ByteSource:
        raise NotImplementedError

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        if path == self.fail_on:
            raise SourceUnavailable(f"{path}: the source answered 503")
        data = FILES[path]
        for start in range(offset, len(data), chunk_size):
            with self.lock:
                self.streamed[path] = self.streamed.get(path, 0) + len(
                    data[start : start + chunk_size]
                )
            yield data[start : start + chunk_size]


class Events:
    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []
        self.bytes: dict[str, int] = {}

    def stage(self, name: str) -> None:
        self.log.append(("stage", name))

    def file_started(self, path: str, size: int) -> None:
        self.log.append(("started", path))

    def advance(self, path: str, nbytes: int) -> None:
        self.bytes[path] = self.bytes.get(path, 0) + nbytes

    def file_done(self, path: str, skipped: bool) -> None:
        self.log.append(("done", path, str(skipped)))


def _registry_target(registry: MemoryRegistry) -> RegistryTarget:
    clock = FakeClock()
    client = RegistryClient("r.test", sleep=clock.sleep, transport=FakeTransport(registry))
    return RegistryTarget(client, Reference("r.test", "ai/tiny", "uid-1"))


def _publish(target: object, source: MemorySource, events: Events) -> PublishedArtifact:
    return publish(_plan(), source, RESOLVED, target, progress=events, chunk_size=1024)  # type: ignore[arg-type]


def test_publish_to_a_registry_reports_stages_and_bytes() -> None:
    registry, events = MemoryRegistry(), Events()
    artifact = _publish(_registry_target(registry), MemorySource(), events)
    stages = [entry[1] for entry in events.log if entry[0] == "stage"]
    assert stages == ["transfer", "config", "manifest"]
    assert events.bytes == {p: len(d) for p, d in FILES.items() if p != "copy.safetensors"}
    assert ("done", "copy.safetensors", "True") in events.log  # same sha256: sent once
    manifest = json.loads(registry.manifests["uid-1"])
    assert artifact.digest == "sha256:" + _sha(registry.manifests["uid-1"])
    assert artifact.reference == f"r.test/ai/tiny@{artifact.digest}"
    assert artifact.media_type == ARTIFACT_TYPE
    assert artifact.size_bytes == manifest["config"]["size"] + sum(map(len, FILES.values()))
    assert artifact.to_status().to_wire()["kind"] == "OCI"
    assert [layer["digest"] for layer in manifest["layers"]] == [
        "sha256:" + _sha(d) for d in FILES.values()
    ]


@pytest.mark.parametrize(("local", "patch_sizes"), [(True, [5000]), (False, [5000])])
def test_a_local_file_and_a_download_go_in_streamed_patches(
    local: bool, patch_sizes: list[int]
) -> None:
    # A download streams too: one PATCH per file, read ahead by a thread (test_upload.py).
    registry = MemoryRegistry()
    client = RegistryClient(
        "r.test", settings=RegistrySettings(chunk_size=2048), transport=FakeTransport(registry)
    )
    target = RegistryTarget(client, Reference("r.test", "ai/tiny", "uid-1"))
    plan = dataclasses.replace(_plan(), local=local)
    publish(plan, MemorySource(), RESOLVED, target, progress=Events(), chunk_size=2048)
    assert registry.patch_sizes == patch_sizes  # the two 5000-byte weights have one content
    assert registry.puts_with_body == 3  # config.json, README.md and the config blob


def test_known_blobs_are_neither_downloaded_nor_sent_again() -> None:
    registry = MemoryRegistry()
    first = _publish(_registry_target(registry), MemorySource(), Events())
    patches = registry.patches
    source, events = MemorySource(), Events()
    second = _publish(_registry_target(registry), source, events)
    assert second.digest == first.digest
    assert "model.safetensors" not in source.streamed
    assert ("done", "model.safetensors", "True") in events.log
    # small files without a known sha256 are read to learn their digest, but not sent again
    assert source.streamed == {"config.json": len(FILES["config.json"]), "README.md": 6}
    assert registry.patches == patches
    assert all(entry[2] == "True" for entry in events.log if entry[0] == "done")


def test_layout_and_registry_give_the_same_digest(tmp_path: Path) -> None:
    layout = LayoutTarget(OciLayout(tmp_path, create=True), "uid-1", ARTIFACT_TYPE)
    from_layout = _publish(layout, MemorySource(), Events())
    from_registry = _publish(_registry_target(MemoryRegistry()), MemorySource(), Events())
    assert from_layout.digest == from_registry.digest
    assert from_layout.reference == f"{tmp_path}@{from_layout.digest}"


def test_a_lying_source_fails_with_invalid_weights_naming_the_file() -> None:
    plan = _plan(lie_about="model.safetensors")
    target = _registry_target(MemoryRegistry())
    with pytest.raises(InvalidWeights, match=r"^model\.safetensors: the content does not match"):
        publish(plan, MemorySource(), RESOLVED, target, progress=Events(), chunk_size=1024)


def test_one_failing_file_fails_the_publish_with_its_error() -> None:
    target = _registry_target(MemoryRegistry())
    with pytest.raises(SourceUnavailable, match=r"config\.json"):
        _publish(target, MemorySource(fail_on="config.json"), Events())


class TerminatedSource(MemorySource):
    """SIGTERM arrives (``terminated`` set) after the first piece of the weight."""

    def __init__(self, terminated: threading.Event) -> None:
        super().__init__()
        self.terminated = terminated

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        for piece in super().stream(path, offset, chunk_size):
            yield piece
            if path == "model.safetensors":
                self.terminated.set()


def test_sigterm_stops_the_transfers_and_the_registry_keeps_what_it_accepted() -> None:
    registry, terminated = MemoryRegistry(), threading.Event()
    source = TerminatedSource(terminated)
    settings = RegistrySettings(chunk_size=1024)  # the 5,000-byte weight is not a small blob
    client = RegistryClient("r.test", settings=settings, transport=FakeTransport(registry))
    target = RegistryTarget(client, Reference("r.test", "ai/tiny", "uid-1"))
    with pytest.raises(Interrupted, match=r"^stopped by SIGTERM; the registry keeps") as raised:
        publish(
            _plan(),
            source,
            RESOLVED,
            target,
            progress=Events(),
            chunk_size=1024,
            concurrency=1,
            terminated=terminated,
        )
    assert raised.value.exit_code == 1  # transient: the Job's next pod resumes
    assert registry.manifests == {}
    # SIGTERM came while the weight's (largest, first) second 1 KiB piece was read: that piece
    # is not sent, the first stays in the registry's open session, no other file started.
    assert source.streamed == {"model.safetensors": 2048}
    assert [len(data) for data in registry.uploads.values()] == [1024]
    assert registry.patch_sizes == [1024]  # the streamed body ended there, and was answered


def test_an_empty_plan_is_refused() -> None:
    plan = SourcePlan("u", None, None, "n", "GGUF", ())
    with pytest.raises(ValueError, match="no files"):
        publish(
            plan, MemorySource(), RESOLVED, _registry_target(MemoryRegistry()), progress=Events()
        )


class RacingTarget:
    """Wraps a target; its ``has_blob`` holds each caller of the LICENSE digest until a second
    one arrives (or 0.5 s pass): the moment two files with one content both learnt their digest
    and asked. Counts ``put_blob`` calls per digest; ``fail``: the LICENSE blob's put fails."""

    def __init__(self, inner: ArtifactTarget, fail: bool = False) -> None:
        self.inner = inner
        self.fail = fail
        self.tag = inner.tag
        self.puts: dict[str, int] = {}
        self._both = threading.Barrier(2)
        self._lock = threading.Lock()

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        if digest == "sha256:" + _sha(LICENSE):
            with contextlib.suppress(threading.BrokenBarrierError):
                self._both.wait(timeout=0.5)
        return self.inner.has_blob(digest, size)

    def put_blob(
        self,
        open_chunks: Any,
        size: int,
        digest: str | None,
        on_bytes: Any,
        *,
        streamed: bool = False,
    ) -> str:
        with self._lock:
            self.puts[str(digest)] = self.puts.get(str(digest), 0) + 1
        if self.fail and digest == "sha256:" + _sha(LICENSE):
            raise RegistryUnavailable("registry 503 after 6 attempts (test)")
        return self.inner.put_blob(open_chunks, size, digest, on_bytes, streamed=streamed)

    def put_manifest(self, data: bytes, media_type: str, tag: str | None) -> str:
        return self.inner.put_manifest(data, media_type, tag)

    def pinned(self, digest: str) -> str:
        return self.inner.pinned(digest)


LICENSE = b"Apache License 2.0\n" * 10
COPIES = {"LICENSE": LICENSE, "model.safetensors": b"W" * 5000, "docs/LICENSE": LICENSE}


class CopiesSource:
    """A local directory with two copies of one file: no sha256 in the plan."""

    def __init__(self) -> None:
        self.streamed: dict[str, list[int]] = {}
        self.lock = threading.Lock()

    def plan(self) -> SourcePlan:
        files = tuple(PlannedFile(p, len(d), "doc") for p, d in COPIES.items())
        return SourcePlan("/m", None, None, "m", "Safetensors", files, local=True)

    def byte_source(self, path: str) -> ByteSource:
        raise NotImplementedError

    def stream(self, path: str, offset: int = 0, chunk_size: int = 8 << 20) -> Iterator[bytes]:
        with self.lock:
            self.streamed.setdefault(path, []).append(offset)
        data = COPIES[path]
        for start in range(offset, len(data), chunk_size):
            yield data[start : start + chunk_size]


@pytest.mark.parametrize("kind", ["layout", "registry"])
def test_two_files_with_the_same_content_are_written_once(tmp_path: Path, kind: str) -> None:
    registry = MemoryRegistry()
    inner: ArtifactTarget = (
        LayoutTarget(OciLayout(tmp_path, create=True), "latest", ARTIFACT_TYPE)
        if kind == "layout"
        else _registry_target(registry)
    )
    target = RacingTarget(inner)
    source, events = CopiesSource(), Events()
    artifact = publish(
        source.plan(), source, RESOLVED, target, progress=events, concurrency=3, chunk_size=1024
    )
    license_digest = "sha256:" + _sha(LICENSE)
    assert target.puts[license_digest] == 1
    done = sorted(entry for entry in events.log if entry[0] == "done" and "LICENSE" in entry[1])
    assert [entry[2] for entry in done].count("True") == 1  # one copy written, one skipped
    if isinstance(inner, LayoutTarget):
        assert inner.layout.blob_path(license_digest).read_bytes() == LICENSE
        manifest = json.loads(inner.layout.blob_path(artifact.digest).read_bytes())
    else:
        assert registry.blobs[license_digest] == LICENSE
        manifest = json.loads(registry.manifests["uid-1"])
    assert [layer["digest"] for layer in manifest["layers"]] == [
        "sha256:" + _sha(d) for d in COPIES.values()
    ]


def test_a_local_plan_is_hashed_first_and_sends_nothing_the_target_has() -> None:
    """Local files have no sha256 in the plan: a large one used to be hashed while it was sent,
    so an unchanged directory was sent again in full."""
    registry = MemoryRegistry()
    source = CopiesSource()
    publish(source.plan(), source, RESOLVED, _registry_target(registry), progress=Events(),
            chunk_size=1024)  # fmt: skip
    patches, source.streamed = registry.patches, {}
    events = Events()
    publish(source.plan(), source, RESOLVED, _registry_target(registry), progress=events,
            chunk_size=1024)  # fmt: skip
    assert registry.patches == patches
    assert events.bytes == {}
    # each file read once, from its start, to learn its digest; nothing read a second time
    assert source.streamed == {"LICENSE": [0], "model.safetensors": [0], "docs/LICENSE": [0]}


def test_a_file_waiting_for_a_failed_transfer_of_its_content_fails_with_its_error(
    tmp_path: Path,
) -> None:
    inner = LayoutTarget(OciLayout(tmp_path, create=True), "latest", ARTIFACT_TYPE)
    target = RacingTarget(inner, fail=True)
    source = CopiesSource()
    with pytest.raises(RegistryUnavailable, match=r"^registry 503 after 6 attempts \(test\)$"):
        publish(source.plan(), source, RESOLVED, target, progress=Events(), chunk_size=1024)
    assert target.puts["sha256:" + _sha(LICENSE)] == 1


def test_a_local_file_that_grew_since_the_plan_is_invalid_weights() -> None:
    source = CopiesSource()
    plan = source.plan()
    shrunk = tuple(
        PlannedFile(f.path, f.size - 1, f.role) if f.path == "model.safetensors" else f
        for f in plan.files
    )
    with pytest.raises(
        InvalidWeights,
        match=r"^model\.safetensors: the source served 5000 bytes but announced 4999; the file "
        r"changed while it was published, publish again$",
    ):
        publish(
            dataclasses.replace(plan, files=shrunk), source, RESOLVED,
            _registry_target(MemoryRegistry()), progress=Events(), chunk_size=1024,
        )  # fmt: skip


def test_files_start_largest_first_and_the_manifest_keeps_the_plans_order() -> None:
    # The largest file is the transfer's critical path: small ones go beside it, not before.
    registry, source, events = MemoryRegistry(), CopiesSource(), Events()
    publish(
        source.plan(), source, RESOLVED, _registry_target(registry), progress=events,
        concurrency=1, chunk_size=1024,
    )  # fmt: skip
    started = [entry[1] for entry in events.log if entry[0] == "started"]
    assert started == ["model.safetensors", "LICENSE", "docs/LICENSE"]
    manifest = json.loads(registry.manifests["uid-1"])
    titles = [layer["annotations"]["org.cncf.model.filepath"] for layer in manifest["layers"]]
    assert titles == list(COPIES)
