"""Records: cached reads, compare-and-swap writes; progress written at most every 2 s, at once
on flush, never over a restarted or further upload."""

from __future__ import annotations

from api.upload import UploadProgress
from controller.errors import Conflict
from controller.kube import SECRETS
from gateway.progress import ProgressBook
from gateway.records import RecordStore
from tests.unit.controller.fakekube import FakeKube
from tests.unit.gateway.records_helpers import SYSTEM, seeded, stored_record

LOC = "/v2/ai-models/upload/upload-u1/blobs/uploads/uuid-1"


def started(kube: FakeKube) -> tuple[RecordStore, ProgressBook]:
    record, _ = seeded(kube)
    store = RecordStore(kube, SYSTEM, clock=kube.clock.monotonic)
    progress = UploadProgress(
        filename="m.gguf", location=f"{LOC}?_state=0", updated_at=kube.clock.now()
    )
    store.update(record.session, lambda r: r.model_copy(update={"upload": progress}))
    book = ProgressBook(store, clock=kube.clock.monotonic, now=kube.clock.now)
    book.started(record.session, f"{LOC}?_state=0")
    return store, book


def replaces(kube: FakeKube) -> int:
    return len(kube.calls_of("replace", SECRETS))


def test_writes_at_most_every_interval_then_on_flush() -> None:
    kube = FakeKube()
    _, book = started(kube)
    before = replaces(kube)
    for n in range(1, 5):
        kube.clock.advance(0.5)
        book.advanced("upload-u1", f"{LOC}?_state={n}", n * 100)
        book.flush_due()
    assert replaces(kube) == before + 1  # at 2.0 s
    upload = stored_record(kube, "upload-u1").upload
    assert upload is not None
    assert (upload.offset, upload.location, upload.bytes_per_second) == (
        400,
        f"{LOC}?_state=4",
        200.0,
    )
    book.advanced("upload-u1", f"{LOC}?_state=5", 500)
    book.flush("upload-u1")
    book.flush("upload-u1")  # nothing new: no write
    assert replaces(kube) == before + 2
    assert stored_record(kube, "upload-u1").upload.offset == 500  # type: ignore[union-attr]


def test_the_background_flush_writes_idle_uploads() -> None:
    kube = FakeKube()
    _, book = started(kube)
    book.advanced("upload-u1", f"{LOC}?_state=1", 100)
    book.flush_due()
    assert stored_record(kube, "upload-u1").upload.offset == 0  # type: ignore[union-attr]
    kube.clock.advance(2.0)
    book.flush_due()
    assert stored_record(kube, "upload-u1").upload.offset == 100  # type: ignore[union-attr]


def test_never_over_a_restarted_or_further_upload() -> None:
    kube = FakeKube()
    store, book = started(kube)
    book.advanced("upload-u1", f"{LOC}?_state=1", 100)
    further = stored_record(kube, "upload-u1").upload.model_copy(  # type: ignore[union-attr]
        update={"offset": 900, "location": f"{LOC}?_state=9"}
    )
    store.update("upload-u1", lambda r: r.model_copy(update={"upload": further}))
    book.flush("upload-u1")
    assert stored_record(kube, "upload-u1").upload.offset == 900  # type: ignore[union-attr]
    restarted = further.model_copy(update={"offset": 0, "location": "/v2/x/blobs/uploads/uuid-2"})
    store.update("upload-u1", lambda r: r.model_copy(update={"upload": restarted}))
    book.advanced("upload-u1", f"{LOC}?_state=10", 1000)
    book.flush("upload-u1")
    assert stored_record(kube, "upload-u1").upload == restarted


def test_a_conflict_is_retried_on_the_fresh_record() -> None:
    kube = FakeKube()
    _, book = started(kube)
    kube.fail("replace", SECRETS, Conflict(409, "Conflict", "stale"))
    book.advanced("upload-u1", f"{LOC}?_state=1", 100)
    book.flush("upload-u1")
    assert stored_record(kube, "upload-u1").upload.offset == 100  # type: ignore[union-attr]
