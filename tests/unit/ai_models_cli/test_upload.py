"""The resumable upload against an in-memory gateway: resume, retries, offsets, commit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from ai_models_cli.errors import GatewayError, GatewayUnreachable, PayloadChanged
from ai_models_cli.upload import Cursor, RetryPolicy, Uploader
from tests.unit.ai_models_cli.fakegateway import FakeGateway, answer, cut_after

CHUNK = 1000
DATA = bytes(i * 7 % 251 for i in range(10_500))  # 11 chunks, the last one short
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class BytesPayload:
    """Yields odd-sized blocks, so chunks never line up with them; counts its generations."""

    data: bytes = DATA
    filename: str = "model.tar"
    generated: int = 0

    @property
    def size(self) -> int:
        return len(self.data)

    def blocks(self) -> Iterator[bytes]:
        self.generated += 1
        for start in range(0, len(self.data), 333):
            yield self.data[start : start + 333]


@dataclass
class Silent:
    notes: list[str] = field(default_factory=list)
    started: list[tuple[int, int]] = field(default_factory=list)

    def start(self, total: int, at: int) -> None:
        self.started.append((total, at))

    def update(self, done: int) -> None:
        pass

    def note(self, message: str) -> None:
        self.notes.append(message)

    def finish(self) -> None:
        pass


def run(gateway: FakeGateway, payload: BytesPayload | None = None) -> tuple[Uploader, list[float]]:
    slept: list[float] = []
    uploader = Uploader(
        gateway, payload or BytesPayload(), Silent(), RetryPolicy(attempts=3), slept.append, CHUNK
    )
    return uploader, slept


def test_a_new_upload_starts_sends_every_chunk_and_commits_the_sha256() -> None:
    gateway = FakeGateway()
    uploader, slept = run(gateway)
    outcome = uploader.run()
    assert gateway.calls == ["HEAD", "POST", *["PATCH"] * 11, "COMMIT"]
    assert gateway.patched == [(i * CHUNK, min(CHUNK, len(DATA) - i * CHUNK)) for i in range(11)]
    assert outcome.result is not None
    assert outcome.result.digest == f"sha256:{SHA}"
    assert (outcome.resumed_at, outcome.sent) == (0, len(DATA))
    assert slept == []


def test_a_rerun_resumes_from_the_gateway_offset_hashing_the_prefix_without_sending_it() -> None:
    gateway = FakeGateway()
    gateway.start("model.tar", len(DATA))
    gateway.data += DATA[:5_250]
    payload = BytesPayload()
    uploader, _ = run(gateway, payload)
    outcome = uploader.run()
    assert gateway.calls == ["POST", "HEAD", *["PATCH"] * 6, "COMMIT"]
    assert gateway.patched[0] == (5_250, CHUNK)
    assert (outcome.resumed_at, outcome.sent) == (5_250, len(DATA) - 5_250)
    assert outcome.result is not None
    assert outcome.result.digest == f"sha256:{SHA}"
    assert payload.generated == 1


@pytest.mark.parametrize(
    ("filename", "length"), [("other.tar", len(DATA)), ("model.tar", len(DATA) + 1)]
)
def test_an_upload_in_flight_of_another_file_is_restarted(filename: str, length: int) -> None:
    gateway = FakeGateway()
    gateway.start(filename, length)
    gateway.data += DATA[:3_000]
    uploader, _ = run(gateway)
    outcome = uploader.run()
    assert gateway.calls[:3] == ["POST", "HEAD", "POST"]
    assert (outcome.resumed_at, outcome.sent) == (0, len(DATA))
    assert gateway.filename == "model.tar"


def test_a_broken_connection_asks_head_again_and_goes_on_from_what_arrived() -> None:
    gateway = FakeGateway()
    gateway.faults[4] = cut_after(400)  # the 5th PATCH breaks after 400 of its 1000 bytes
    uploader, slept = run(gateway)
    outcome = uploader.run()
    assert gateway.calls[:8] == [
        "HEAD",
        "POST",
        "PATCH",
        "PATCH",
        "PATCH",
        "PATCH",
        "PATCH",
        "HEAD",
    ]
    assert gateway.patched[4] == (4_400, CHUNK)
    assert bytes(gateway.data) == DATA
    assert outcome.result is not None
    assert outcome.result.digest == f"sha256:{SHA}"
    assert slept == [1.0]


def test_transient_errors_back_off_exponentially_then_give_up_as_transient() -> None:
    gateway = FakeGateway()
    for number in range(0, 4):
        gateway.faults[number] = answer(503, "RegistryUnavailable")
    uploader, slept = run(gateway)
    with pytest.raises(GatewayError, match=r"^RegistryUnavailable: RegistryUnavailable for") as e:
        uploader.run()
    assert e.value.exit_code == 1
    assert slept == [1.0, 2.0, 4.0]


def test_progress_resets_the_failure_count() -> None:
    gateway = FakeGateway()
    for number in (1, 3, 5, 7):  # each failure is followed by a success
        gateway.faults[number] = cut_after(0)
    uploader, slept = run(gateway)
    assert uploader.run().result is not None
    assert slept == [1.0, 1.0, 1.0, 1.0]


def test_retry_after_of_a_429_is_honoured() -> None:
    gateway = FakeGateway()

    def limited(gw: FakeGateway, offset: int, data: bytes) -> None:
        raise GatewayError(429, "TooManyAttempts", "slow down", retry_after=20)

    gateway.faults[0] = limited
    uploader, slept = run(gateway)
    assert uploader.run().result is not None
    assert slept == [20.0]


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "Unauthorized"), (410, "UploadExpired"), (413, "TooLarge"), (400, "BadRequest")],
)
def test_a_permanent_answer_stops_at_once(status: int, code: str) -> None:
    gateway = FakeGateway()
    gateway.faults[2] = answer(status, code)
    uploader, slept = run(gateway)
    with pytest.raises(GatewayError) as raised:
        uploader.run()
    assert (str(raised.value), raised.value.exit_code) == (f"{code}: {code} for the test", 2)
    assert slept == []
    assert uploader.cursor.pos == 2 * CHUNK


def test_an_offset_mismatch_moves_to_the_gateway_offset_even_backwards() -> None:
    gateway = FakeGateway()

    def lost(gw: FakeGateway, offset: int, data: bytes) -> None:
        del gw.data[1_500:]  # the gateway knows less than it confirmed

    gateway.faults[3] = lost
    payload = BytesPayload()
    uploader, slept = run(gateway, payload)
    assert uploader.run().result is not None
    assert bytes(gateway.data) == DATA
    assert payload.generated == 2  # going back regenerates the stream from byte 0
    assert slept == []


def test_a_commit_retried_after_a_lost_answer_accepts_already_committed() -> None:
    gateway = FakeGateway()
    gateway.commit_faults.append(GatewayUnreachable("http://gw: ReadTimeout"))
    uploader, slept = run(gateway)
    original_commit = gateway.commit

    def committed_then_lost(sha256: str, size: int) -> object:
        if not gateway.committed:
            gateway.commit_faults.clear()
            original_commit(sha256, size)
            raise GatewayUnreachable("http://gw: ReadTimeout")
        return original_commit(sha256, size)

    gateway.commit = committed_then_lost  # type: ignore[method-assign,assignment]
    outcome = uploader.run()
    assert outcome.result is None
    assert gateway.calls[-3:] == ["COMMIT", "HEAD", "COMMIT"]
    assert slept == [1.0]


def test_an_upload_already_committed_before_the_run_is_reported_as_such() -> None:
    gateway = FakeGateway()
    gateway.head_error = GatewayError(409, "AlreadyCommitted", "the upload is committed")
    uploader, _ = run(gateway)
    assert uploader.run().result is None


def test_the_cursor_hashes_across_odd_blocks_and_refuses_a_short_payload() -> None:
    payload = BytesPayload()
    cursor = Cursor(payload, CHUNK)
    cursor.seek(7_777)
    assert cursor.peek() == DATA[7_777:8_777]
    cursor.seek(len(DATA))
    assert cursor.sha256() == SHA
    short = BytesPayload()
    short.data = DATA[:100]
    cursor = Cursor(short, CHUNK)
    with pytest.raises(PayloadChanged, match=r"model\.tar ended before byte 200"):
        cursor.seek(200)


def test_ctrl_c_leaves_the_confirmed_offset_to_resume_from() -> None:
    gateway = FakeGateway()

    def interrupted(gw: FakeGateway, offset: int, data: bytes) -> None:
        raise KeyboardInterrupt

    gateway.faults[3] = interrupted
    uploader, _ = run(gateway)
    with pytest.raises(KeyboardInterrupt):
        uploader.run()
    assert (uploader.confirmed, len(gateway.data)) == (3 * CHUNK, 3 * CHUNK)
    rerun, _ = run(gateway)
    outcome = rerun.run()
    assert (outcome.resumed_at, outcome.sent) == (3 * CHUNK, len(DATA) - 3 * CHUNK)
