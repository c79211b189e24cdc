"""The operations against a fake registry that behaves as the distribution registry does: a new
location after each PATCH, stale locations refused (status queries included), the digest
checked at the final PUT."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest

from api.upload import CommitRequest, SessionRecord
from gateway.body import Body
from gateway.errors import ClientGone, Refusal
from gateway.progress import ProgressBook
from gateway.records import RecordStore
from gateway.uploads import Uploads
from gateway.wire import Claim
from oci.errors import Refused
from tests.unit.controller.fakekube import FakeKube
from tests.unit.gateway.records_helpers import SYSTEM, seeded, stored_record

BASE = "http://registry.test"


class FakeRegistry:
    base_url = BASE

    def __init__(self) -> None:
        self.uploads: dict[str, bytearray] = {}
        self.blobs: dict[str, bytes] = {}
        self.patches = 0

    def _session(self, location: str) -> tuple[str, bytearray] | None:
        path, _, state = location.partition("?_state=")
        data = self.uploads.get(path)
        return (path, data) if data is not None and state == str(len(data)) else None

    def start_upload(self, repository: str) -> str:
        path = f"{BASE}/v2/{repository}/blobs/uploads/u{len(self.uploads)}"
        self.uploads[path] = bytearray()
        return f"{path}?_state=0"

    def upload_offset(self, repository: str, location: str) -> int | None:
        found = self._session(location)
        return len(found[1]) if found else None

    def upload_chunk(self, repository: str, location: str, data: bytes, offset: int) -> str:
        found = self._session(location)
        if found is None:
            raise Refused("BLOB_UPLOAD_INVALID", 404, frozenset({"BLOB_UPLOAD_INVALID"}))
        self.patches += 1
        found[1].extend(data)
        return f"{found[0]}?_state={len(found[1])}"

    def upload_stream(self, repository: str, location: str, pieces: Any) -> str:
        found = self._session(location)
        if found is None:
            raise Refused("BLOB_UPLOAD_INVALID", 404, frozenset({"BLOB_UPLOAD_INVALID"}))
        self.patches += 1
        for piece in pieces:
            found[1].extend(piece)
        return f"{found[0]}?_state={len(found[1])}"

    def finish_upload(self, repository: str, location: str, digest: str) -> None:
        found = self._session(location)
        assert found is not None
        del self.uploads[found[0]]
        if f"sha256:{hashlib.sha256(found[1]).hexdigest()}" != digest:
            raise Refused("DIGEST_INVALID", 400, frozenset({"DIGEST_INVALID"}))
        self.blobs[digest] = bytes(found[1])

    def cancel_upload(self, repository: str, location: str) -> None:
        self.uploads.pop(location.partition("?")[0], None)


def replica(kube: FakeKube, registry: FakeRegistry) -> Uploads:
    store = RecordStore(kube, SYSTEM, clock=kube.clock.monotonic)
    book = ProgressBook(store, clock=kube.clock.monotonic, now=kube.clock.now)
    fake: Any = registry
    return Uploads(fake, store, book, piece_size=2, segment_size=4, settle_seconds=0.0,
                   now=kube.clock.now, sleep=lambda _: None)  # fmt: skip


def body(data: bytes) -> Body:
    return Body(io.BytesIO(data), len(data))


def fresh(ops: Uploads, session: str = "upload-u1") -> SessionRecord:
    record = ops.store.read(session, fresh=True)
    assert record is not None
    return record


def test_put_streams_whole_chunks_and_commits() -> None:
    kube, registry = FakeKube(), FakeRegistry()
    record, _ = seeded(kube)
    ops = replica(kube, registry)
    result = ops.put(record, "m.gguf", None, body(b"0123456789"))
    digest = f"sha256:{hashlib.sha256(b'0123456789').hexdigest()}"
    assert (result.digest, result.size, registry.patches) == (digest, 10, 3)
    assert registry.blobs == {digest: b"0123456789"}
    assert (
        stored_record(kube, "upload-u1").committed
        == result.model_copy().__class__.model_validate(result.model_dump())
        or stored_record(kube, "upload-u1").committed is not None
    )


def test_resume_on_another_replica_from_the_flushed_location() -> None:
    kube, registry = FakeKube(), FakeRegistry()
    record, _ = seeded(kube)
    first, second = replica(kube, registry), replica(kube, registry)
    first.start(record, "m.gguf", 12)
    assert first.append(fresh(first), Claim(0), body(b"abcdef")) == 6
    # The record still has the POST's location until the first replica flushes.
    with pytest.raises(Refusal) as caught:
        second.status(fresh(second))
    assert caught.value.code == "NoUpload"
    first.book.flush("upload-u1")
    assert second.status(fresh(second)).offset == 6
    with pytest.raises(Refusal) as gap:
        second.append(fresh(second), Claim(8), body(b"x"))
    assert (gap.value.code, gap.value.headers) == ("OffsetMismatch", {"Upload-Offset": "6"})
    assert second.append(fresh(second), Claim(6), body(b"ghijkl")) == 12
    request = CommitRequest(sha256=hashlib.sha256(b"abcdefghijkl").hexdigest(), size=12)
    assert second.commit(fresh(second), request).size == 12
    with pytest.raises(Refusal) as again:
        first.commit(fresh(first), request)
    assert again.value.code == "AlreadyCommitted"


def test_a_wrong_digest_discards_the_upload() -> None:
    kube, registry = FakeKube(), FakeRegistry()
    record, _ = seeded(kube)
    ops = replica(kube, registry)
    ops.start(record, "m.gguf", None)
    ops.append(fresh(ops), Claim(0), body(b"abc"))
    wrong = CommitRequest(sha256="0" * 64, size=3)
    with pytest.raises(Refusal) as mismatch:
        ops.commit(fresh(ops), wrong)
    assert mismatch.value.code == "DigestMismatch"
    assert stored_record(kube, "upload-u1").upload is None
    assert stored_record(kube, "upload-u1").committed is None


def test_past_the_declared_length_or_the_limit() -> None:
    kube, registry = FakeKube(), FakeRegistry()
    record, _ = seeded(kube)
    ops = replica(kube, registry)
    ops.start(record, "m.gguf", 5)
    with pytest.raises(Refusal) as refusal:
        ops.append(fresh(ops), Claim(0), body(b"123456"))
    assert (refusal.value.code, registry.patches) == ("TooLarge", 0)
    assert "Upload-Length of 5" in refusal.value.message
    with pytest.raises(Refusal) as big:
        ops.start(fresh(ops), "m.gguf", record.size_limit_bytes + 1)
    assert big.value.code == "TooLarge"


def test_a_client_that_breaks_off_leaves_a_usable_upload() -> None:
    kube, registry = FakeKube(), FakeRegistry()
    record, _ = seeded(kube)
    ops = replica(kube, registry)
    ops.start(record, "m.gguf", None)
    with pytest.raises(ClientGone):
        ops.append(fresh(ops), Claim(0), Body(io.BytesIO(b"abcdefg"), 10))  # 3 bytes never come
    ops.book.flush("upload-u1")
    standing = ops.status(fresh(ops))
    assert standing.offset == 6  # the whole pieces that arrived, in the registry
    assert ops.append(fresh(ops), Claim(6), body(b"ghij")) == 10
