"""Uploads against the in-memory registry: one streaming PATCH per local blob, a download in
streamed PATCHes of one segment each, small blobs in the PUT, digests, resuming after a broken
source or connection, recovering a lost session."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from oci.digest import sha256_digest
from oci.errors import Unauthorized
from oci.registry import RegistryClient, RegistrySettings
from tests.unit.oci.fakes import Answer, FakeClock, FakeTransport, MemoryRegistry, error_body
from worker.errors import RegistryUnavailable
from worker.oci.content import DigestMismatch
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


def _upload(
    client: RegistryClient,
    opener: Opener,
    digest: str | None,
    sessions: UploadSessions | None = None,
    progress: list[int] | None = None,
    *,
    streamed: bool = True,
) -> str:
    progress = [] if progress is None else progress
    sessions = sessions or UploadSessions()
    size = len(opener.data)
    upload = BlobUpload(client, "a/b", sessions, opener, size, digest, streamed=streamed)
    result = upload.run(progress.append)
    assert sum(progress) >= len(opener.data)
    return result


def _patches(client: RegistryClient) -> list[requests.PreparedRequest]:
    transport = client._session.get_adapter("https://r.test/")
    assert isinstance(transport, FakeTransport)
    return [r for r in transport.requests if r.method == "PATCH"]


@pytest.mark.parametrize("streamed", [True, False])  # a local file, a download (read ahead)
@pytest.mark.parametrize("digest", [DIGEST, None])
def test_a_blob_goes_in_one_patch_streamed_in_the_sources_pieces(
    digest: str | None, streamed: bool
) -> None:
    registry = MemoryRegistry()
    client, progress = _client(registry), list[int]()
    assert _upload(client, Opener(), digest, progress=progress, streamed=streamed) == DIGEST
    assert registry.blobs[DIGEST] == DATA
    (patch,) = _patches(client)
    assert not isinstance(patch.body, bytes)  # streamed, not joined in memory
    assert patch.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in patch.headers
    assert registry.patch_sizes == [10240]
    assert progress == [700] * 14 + [440]  # progress moves while the one request streams
    assert registry.puts_with_body == 0


def test_a_small_blob_with_a_known_digest_goes_in_the_put() -> None:
    registry = MemoryRegistry()
    client = _client(registry)
    data = DATA[:4096]  # one chunk
    progress: list[int] = []
    assert _upload(client, Opener(data), sha256_digest(data), progress=progress) == sha256_digest(
        data
    )
    transport = client._session.get_adapter("https://r.test/")
    assert isinstance(transport, FakeTransport)
    assert [r.method for r in transport.requests] == ["POST", "PUT"]
    assert registry.puts_with_body == 1
    assert progress == [4096]


def test_a_small_blob_without_a_digest_is_hashed_while_it_streams() -> None:
    registry = MemoryRegistry()
    data = DATA[:4096]
    assert _upload(_client(registry), Opener(data), None) == sha256_digest(data)
    assert registry.patches == 1
    assert registry.puts_with_body == 0


def test_empty_blob() -> None:
    registry = MemoryRegistry()
    empty = sha256_digest(b"")
    assert _upload(_client(registry), Opener(b""), empty) == empty
    assert registry.blobs[empty] == b""
    assert registry.patches == 0
    assert registry.puts_with_body == 0


def test_wrong_content_is_a_digest_mismatch() -> None:
    registry = MemoryRegistry()
    with pytest.raises(DigestMismatch):
        _upload(_client(registry), Opener(), "sha256:" + "0" * 64)


@pytest.mark.parametrize("streamed", [True, False])
def test_more_bytes_than_announced_is_a_size_mismatch(streamed: bool) -> None:
    registry = MemoryRegistry()
    opener = Opener()
    upload = BlobUpload(
        _client(registry), "a/b", UploadSessions(), opener, 5000, None, streamed=streamed
    )
    with pytest.raises(DigestMismatch) as raised:
        upload.run(lambda _: None)
    assert raised.value.what == "size"
    assert raised.value.actual == "more than 5000"


def test_fewer_bytes_than_announced_are_a_size_mismatch_and_stay_resumable() -> None:
    registry, sessions = MemoryRegistry(), UploadSessions()
    upload = BlobUpload(_client(registry), "a/b", sessions, Opener(), 20000, DIGEST, streamed=True)
    with pytest.raises(DigestMismatch) as raised:
        upload.run(lambda _: None)
    assert (raised.value.what, raised.value.expected, raised.value.actual) == (
        "size",
        "20000",
        "10240",
    )
    assert registry.blobs == {}
    assert registry.patch_sizes == [10240]
    assert sessions.get(DIGEST) is not None


def test_a_broken_source_resumes_from_the_committed_offset_on_the_next_call() -> None:
    registry = MemoryRegistry()
    client, sessions = _client(registry), UploadSessions()
    with pytest.raises(ConnectionResetError):
        _upload(client, Opener(break_after=12), DIGEST, sessions=sessions)  # 8400 bytes read
    assert sessions.get(DIGEST) is not None
    second = Opener()
    assert _upload(client, second, DIGEST, sessions=sessions) == DIGEST
    # The broken source ended the body: the registry kept the 8400 bytes read before it broke.
    assert registry.patch_sizes == [8400, 10240 - 8400]
    assert second.offsets == [8400]
    assert second.served == len(DATA) - 8400
    assert registry.blobs[DIGEST] == DATA
    assert sessions.get(DIGEST) is None


def test_a_source_broken_before_its_first_byte_resumes_from_zero() -> None:
    # The registry reports the empty session as "0-0" (the status of a 1-byte one too).
    registry = MemoryRegistry()
    client, sessions = _client(registry), UploadSessions()
    with pytest.raises(ConnectionResetError):
        _upload(client, Opener(break_after=0), DIGEST, sessions=sessions)
    second = Opener()
    assert _upload(client, second, DIGEST, sessions=sessions) == DIGEST
    assert second.offsets == [0]
    assert registry.blobs[DIGEST] == DATA


def test_sessions_survive_in_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "uploads.json"
    registry = MemoryRegistry()
    client = _client(registry)
    with pytest.raises(ConnectionResetError):
        _upload(client, Opener(break_after=7), DIGEST, sessions=UploadSessions(state))
    second = Opener()
    _upload(client, second, DIGEST, sessions=UploadSessions(state))
    assert second.offsets == [4900]


def test_a_lost_connection_resumes_at_the_committed_offset_in_a_new_patch() -> None:
    registry = MemoryRegistry(cut_patch=lambda patch: 5000 if patch == 1 else None)
    clock = FakeClock()
    client, opener = _client(registry, clock), Opener()
    assert _upload(client, opener, DIGEST) == DIGEST
    assert opener.offsets == [0, 5000]
    assert registry.patch_sizes == [5000, 5240]
    assert clock.sleeps == [0.5]
    assert registry.blobs[DIGEST] == DATA


def test_a_lost_connection_without_a_digest_starts_over() -> None:
    # The hash covered every byte sent; the registry kept fewer: the prefix cannot be rehashed.
    registry = MemoryRegistry(cut_patch=lambda patch: 5000 if patch == 1 else None)
    opener = Opener()
    assert _upload(_client(registry), opener, None) == DIGEST
    assert opener.offsets == [0, 0]
    assert registry.blobs[DIGEST] == DATA


def test_a_streaming_patch_is_not_retried_in_place_on_503() -> None:
    registry = MemoryRegistry(fail_patch=lambda patch: (503, {}, b"") if patch == 1 else None)
    clock = FakeClock()
    client, opener = _client(registry, clock), Opener()
    assert _upload(client, opener, DIGEST) == DIGEST
    assert opener.offsets == [0, 0]  # resumed at what the registry holds: nothing
    assert registry.patches == 2
    assert clock.sleeps == [0.5]


def test_connections_lost_too_often_end_the_upload() -> None:
    registry = MemoryRegistry(cut_patch=lambda _: 100)
    client = RegistryClient(
        "r.test",
        settings=RegistrySettings(chunk_size=4096, attempts=3),
        sleep=FakeClock().sleep,
        transport=FakeTransport(registry),
    )
    with pytest.raises(RegistryUnavailable, match="lost its connection or session 3 times"):
        _upload(client, Opener(), DIGEST)
    assert registry.patches == 3


def test_a_failed_patch_is_recovered_from_the_session_offset() -> None:
    def fail_first(patch: int) -> Answer | None:
        return (416, {}, error_body("BLOB_UPLOAD_INVALID")) if patch == 1 else None

    registry = MemoryRegistry(fail_patch=fail_first)
    clock = FakeClock()
    opener = Opener()
    assert _upload(_client(registry, clock), opener, DIGEST) == DIGEST
    assert opener.offsets == [0, 0]
    assert clock.sleeps == [0.5]


def test_a_lost_session_starts_over_and_rehashes() -> None:
    registry = MemoryRegistry()

    def drop_sessions(patch: int) -> Answer | None:
        if patch == 1:
            registry.uploads.clear()
            return 404, {}, error_body("BLOB_UPLOAD_UNKNOWN")
        return None

    registry.fail_patch = drop_sessions
    opener = Opener()
    assert _upload(_client(registry), opener, None) == DIGEST
    assert opener.offsets == [0, 0]
    assert hashlib.sha256(registry.blobs[DIGEST]).hexdigest() == DIGEST.removeprefix("sha256:")


# ---- a download in streamed PATCHes of one segment each, read ahead by a thread ------------


def _download(
    client: RegistryClient,
    opener: Opener,
    digest: str | None,
    sessions: UploadSessions | None = None,
    progress: list[int] | None = None,
) -> str:
    size, sessions = len(opener.data), sessions or UploadSessions()
    upload = BlobUpload(client, "a/b", sessions, opener, size, digest, segment_size=4200)
    return upload.run((progress if progress is not None else []).append)


@pytest.mark.parametrize("digest", [DIGEST, None])
def test_a_download_goes_in_streamed_patches_of_one_segment_each(digest: str | None) -> None:
    registry = MemoryRegistry()
    client, progress = _client(registry), list[int]()
    assert _download(client, Opener(), digest, progress=progress) == DIGEST
    assert registry.blobs[DIGEST] == DATA
    assert registry.patch_sizes == [4200, 4200, 1840]  # six 700-byte pieces per segment
    assert all(p.headers["Transfer-Encoding"] == "chunked" for p in _patches(client))
    assert progress == [700] * 14 + [440]


def test_a_download_whose_source_breaks_ends_its_segment_and_resumes_there() -> None:
    registry = MemoryRegistry()
    client, sessions = _client(registry), UploadSessions()
    with pytest.raises(ConnectionResetError):  # 5600 bytes read: one segment and 1400 bytes
        _download(client, Opener(break_after=8), DIGEST, sessions=sessions)
    second = Opener()
    assert _download(client, second, DIGEST, sessions=sessions) == DIGEST
    assert registry.patch_sizes == [4200, 1400, 4200, 440]
    assert second.offsets == [5600]
    assert second.served == len(DATA) - 5600
    assert registry.blobs[DIGEST] == DATA


def test_a_download_whose_patch_fails_resumes_from_the_last_answered_segment() -> None:
    def fail_second(patch: int) -> Answer | None:
        return (416, {}, error_body("BLOB_UPLOAD_INVALID")) if patch == 2 else None

    registry = MemoryRegistry(fail_patch=fail_second)
    clock = FakeClock()
    opener = Opener()
    assert _download(_client(registry, clock), opener, DIGEST) == DIGEST
    assert opener.offsets == [0, 4200]
    assert clock.sleeps == [0.5]
    assert registry.blobs[DIGEST] == DATA


def test_a_download_that_fails_stops_reading_its_source() -> None:
    closed: list[int] = []

    def opener(offset: int) -> Iterator[bytes]:
        try:
            yield from Opener()(offset)
        finally:
            closed.append(offset)

    registry = MemoryRegistry(fail_patch=lambda _: (403, {}, error_body("DENIED")))
    upload = BlobUpload(_client(registry), "a/b", UploadSessions(), opener, len(DATA), DIGEST)
    with pytest.raises(Unauthorized):
        upload.run(lambda _: None)
    _eventually(lambda: closed == [0])


def _eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 5 s"
        time.sleep(0.01)
