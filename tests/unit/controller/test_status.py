"""Status builders: phases, conditions, progress text, transition times."""

from __future__ import annotations

from api.protocol import WorkerResult
from controller import status
from controller.workerpod import Progress, Termination

T0, T1 = "2026-11-26T10:00:00Z", "2026-11-26T10:05:00Z"


def conditions(st: dict) -> dict[str, tuple[str, str, str]]:  # type: ignore[type-arg]
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in st["conditions"]}


def test_progress_message_has_bytes_rate_eta_and_file() -> None:
    progress = Progress(52, "transfer", 47_290_000, 90_900_000, 12_900_000.0, "model.safetensors")
    assert status.progress_message(progress) == (
        "transfer model.safetensors: 45.1 MiB of 86.7 MiB (52%), 12.3 MiB/s, ETA 3s"
    )


def test_publishing_never_shows_100_percent() -> None:
    st = status.publishing({}, 1, T0, Progress(100, "manifest"), None)
    assert st["progress"] == "99%"
    assert st["phase"] == "Publishing"


def test_retry_note_leads_the_message_and_reason_is_the_transient_one() -> None:
    st = status.publishing(
        {}, 3, T0, None, "retrying (attempt 2/4): RegistryUnavailable: 503", "RegistryUnavailable"
    )
    assert conditions(st)["Ready"] == (
        "False",
        "RegistryUnavailable",
        "retrying (attempt 2/4): RegistryUnavailable: 503; the preparation Job is starting",
    )
    assert all(c["observedGeneration"] == 3 for c in st["conditions"])
    assert st["observedGeneration"] == 3


def test_transition_time_kept_while_status_unchanged() -> None:
    first = status.publishing({}, 1, T0, Progress(10), None)
    second = status.publishing(first, 1, T1, Progress(20), None)
    assert [c["lastTransitionTime"] for c in second["conditions"]] == [T0, T0, T0]
    result = WorkerResult.model_validate(
        {
            "artifact": {
                "kind": "OCI",
                "digest": "sha256:" + "a" * 64,
                "mediaType": "m",
                "sizeBytes": 2048,
            },
            "resolved": {"format": "GGUF"},
            "source": {"resolvedType": "Ollama"},
        }
    )
    ready = status.ready(second, 1, T1, result)
    assert conditions(ready)["Ready"] == (
        "True",
        "Published",
        f"published sha256:{'a' * 64} (2.0 KiB)",
    )
    assert conditions(ready)["MetadataResolved"] == (
        "True",
        "MetadataPartial",
        "not found in the source: architecture, parameter_count",
    )
    assert "progress" not in ready
    assert [c["lastTransitionTime"] for c in ready["conditions"]] == [T1, T1, T1]


def test_queued_message_says_position_and_limit() -> None:
    st = status.queued({}, 1, T0, 2, 2, 2)
    assert st["phase"] == "Pending"
    assert conditions(st)["Ready"] == (
        "False",
        "Queued",
        "queued: position 2 for a preparation slot (2 of 2 running; worker.maxConcurrent=2)",
    )


def test_upload_block_is_preserved() -> None:
    old = {"upload": {"secretName": "s", "secretNamespace": "n"}}
    assert status.failed(old, 1, T0, "UploadExpired", "m")["upload"] == old["upload"]


LAST = Termination(1, "SourceUnavailable", "the Hub answered 503")
JOB = "d8-ai-models/prepare-0b7f"


def test_the_job_is_named_while_it_runs() -> None:
    progress = Progress(52, "transfer", 47_290_000, 90_900_000, 12_900_000.0, "model.safetensors")
    st = status.publishing({}, 1, T0, progress, None, job=JOB)
    assert conditions(st)["Ready"] == (
        "False",
        "Publishing",
        "transfer model.safetensors: 45.1 MiB of 86.7 MiB (52%), 12.3 MiB/s, ETA 3s "
        "(Job d8-ai-models/prepare-0b7f)",
    )


def test_attempts_are_counted_one_way_everywhere() -> None:
    assert status.retry_note(1, 3, None) is None
    assert status.retry_note(2, 3, LAST, retry_in=10) == (
        "retrying in 10s (attempt 2 of 3): SourceUnavailable: the Hub answered 503"
    )
    assert status.retry_note(3, 3, LAST) == (
        "retrying (attempt 3 of 3): SourceUnavailable: the Hub answered 503"
    )


def test_the_backoff_says_when_and_which_attempt_without_starting() -> None:
    note = status.retry_note(3, 3, LAST, retry_in=20)
    st = status.publishing({}, 1, T0, None, note, "SourceUnavailable", JOB, waiting=True)
    assert conditions(st)["Ready"] == (
        "False",
        "SourceUnavailable",
        "retrying in 20s (attempt 3 of 3): SourceUnavailable: the Hub answered 503 "
        "(Job d8-ai-models/prepare-0b7f)",
    )
    assert "progress" not in st


def test_an_event_carries_the_job_and_the_last_log_lines() -> None:
    assert status.with_log("SourceNotFound: no repo", JOB, ()) == (
        "SourceNotFound: no repo (Job d8-ai-models/prepare-0b7f)"
    )
    assert status.with_log("SourceNotFound: no repo", JOB, ("l1", "l2")) == (
        "SourceNotFound: no repo\nlast worker log lines of Job d8-ai-models/prepare-0b7f:\nl1\nl2"
    )


def test_stages_after_the_transfer_show_no_rate_and_inspecting_no_percent() -> None:
    done = Progress(100, "config", 91_500_000, 91_500_000, 14_000_000.0)
    assert status.progress_message(done) == "config: 87.3 MiB of 87.3 MiB (100%)"
    assert status.progress_message(Progress(0, "inspecting")) == "inspecting"
