"""Chunked uploads against the in-memory registry: chunk sizes, digests, resuming, recovering."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from oci.digest import sha256_digest
from oci.registry import RegistryClient, RegistrySettings
from tests.unit.oci.fakes import Answer, FakeClock, FakeTransport, MemoryRegistry, error_body
from worker.oci.content import DigestMismatch, rechunk
from worker.oci.upload import BlobUpload, UploadSessions

DATA = bytes(range(256)) * 40  # 10240 bytes
DIGEST = sha256_digest(DATA)


class Opener:
    """Serves DATA from an offset in pieces of 700 bytes; can break after some pieces."""

    def __init__(self, data: bytes = DATA, break_after: int | None = None) -> None:
        self.data = data
        self.break_after = break_after
        self.offsets: list[int] = []
        self.served = 0

    def __call__(self, offset: int) -> Iterator[bytes]:
        self.offsets.append(offset)
        for index, start in enumerate(range(offset, len(self.data), 700)):
            if self.break_after is not None and index == self.break_after:
                raise ConnectionResetError("source went away")
            piece = self.data[start : start + 700]
            self.served += len(piece)
            yield piece


def _client(registry: MemoryRegistry, clock: FakeClock | None = None) -> RegistryClient:
    return RegistryClient(
        "r.test",
        settings=RegistrySettings(chunk_size=4096),
        sleep=(clock or FakeClock()).sleep,
        transport=FakeTransport(registry),
    )


def _upload(client: RegistryClient, opener: Opener, digest: str | None, **kw: object) -> str:
    sessions = kw.get("sessions") or UploadSessions()
    assert isinstance(sessions, UploadSessions)
    progress: list[int] = []
    result = BlobUpload(client, "a/b", sessions, opener, len(opener.data), digest).run(
        progress.append
    )
    assert sum(progress) >= len(opener.data)
    return result


@pytest.mark.parametrize("digest", [DIGEST, None])
def test_uploads_in_chunks_of_the_configured_size(digest: str | None) -> None:
    registry = MemoryRegistry()
    assert _upload(_client(registry), Opener(), digest) == DIGEST
    assert registry.blobs[DIGEST] == DATA
    assert registry.patches == 3  # 4096 + 4096 + 2048


def test_empty_blob() -> None:
    registry = MemoryRegistry()
    empty = sha256_digest(b"")
    assert _upload(_client(registry), Opener(b""), empty) == empty
    assert registry.blobs[empty] == b""
    assert registry.patches == 0


def test_wrong_content_is_a_digest_mismatch() -> None:
    registry = MemoryRegistry()
    with pytest.raises(DigestMismatch):
        _upload(_client(registry), Opener(), "sha256:" + "0" * 64)


def test_more_bytes_than_announced_is_a_size_mismatch() -> None:
    registry = MemoryRegistry()
    opener = Opener()
    upload = BlobUpload(_client(registry), "a/b", UploadSessions(), opener, 5000, None)
    with pytest.raises(DigestMismatch) as raised:
        upload.run(lambda _: None)
    assert raised.value.what == "size"


def test_a_broken_source_resumes_from_the_committed_offset_on_the_next_call() -> None:
    registry = MemoryRegistry()
    client, sessions = _client(registry), UploadSessions()
    with pytest.raises(ConnectionResetError):
        _upload(client, Opener(break_after=12), DIGEST, sessions=sessions)  # 8400 bytes read
    assert sessions.get(DIGEST) is not None
    second = Opener()
    assert _upload(client, second, DIGEST, sessions=sessions) == DIGEST
    assert second.offsets == [8192]  # two whole chunks were committed
    assert second.served == len(DATA) - 8192
    assert registry.blobs[DIGEST] == DATA
    assert sessions.get(DIGEST) is None


def test_sessions_survive_in_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "uploads.json"
    registry = MemoryRegistry()
    client = _client(registry)
    with pytest.raises(ConnectionResetError):
        _upload(client, Opener(break_after=7), DIGEST, sessions=UploadSessions(state))
    second = Opener()
    _upload(client, second, DIGEST, sessions=UploadSessions(state))
    assert second.offsets == [4096]


def test_a_failed_patch_is_recovered_from_the_session_offset() -> None:
    def fail_second(patch: int) -> Answer | None:
        return (416, {}, error_body("BLOB_UPLOAD_INVALID")) if patch == 2 else None

    registry = MemoryRegistry(fail_patch=fail_second)
    clock = FakeClock()
    opener = Opener()
    assert _upload(_client(registry, clock), opener, DIGEST) == DIGEST
    assert opener.offsets == [0, 4096]
    assert clock.sleeps == [0.5]


def test_a_lost_session_starts_over_and_rehashes() -> None:
    registry = MemoryRegistry()

    def drop_sessions(patch: int) -> Answer | None:
        if patch == 2:
            registry.uploads.clear()
            return 404, {}, error_body("BLOB_UPLOAD_UNKNOWN")
        return None

    registry.fail_patch = drop_sessions
    opener = Opener()
    assert _upload(_client(registry), opener, None) == DIGEST
    assert opener.offsets == [0, 0]
    assert hashlib.sha256(registry.blobs[DIGEST]).hexdigest() == DIGEST.removeprefix("sha256:")


@pytest.mark.parametrize(
    ("pieces", "chunks"),
    [
        ([b"abc", b"de", b"fghij"], [b"abcd", b"efgh", b"ij"]),
        ([b"abcd", b"efgh"], [b"abcd", b"efgh"]),
        ([b"abcdefghij"], [b"abcd", b"efgh", b"ij"]),
        ([], []),
    ],
)
def test_rechunk(pieces: list[bytes], chunks: list[bytes]) -> None:
    assert list(rechunk(pieces, 4)) == chunks
