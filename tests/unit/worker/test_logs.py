"""The worker's log lines under a fixed clock: text for people by default, JSON when asked, and
the tail kept for the termination message (redacted, within the kubelet's 4 KiB)."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator

import pytest
import structlog

from worker import logs
from worker.progress import ProgressReporter

T0 = dt.datetime(2026, 11, 30, 10, 0, 7, 250_000, tzinfo=dt.UTC)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure(out, env={}, clock=lambda: T0)
    yield out
    structlog.reset_defaults()


def test_text_is_the_default_one_line_per_event(stream: io.StringIO) -> None:
    log = structlog.get_logger("worker")
    log.info("inspected", source="https://huggingface.co/org/repo", files=3, notes=["a b"])
    log.warning("pod annotation patch failed", status=None, error="ApiException")
    assert stream.getvalue().splitlines() == [
        "2026-11-30T10:00:07.250Z info  inspected source=https://huggingface.co/org/repo files=3 "
        'notes="[\\"a b\\"]"',
        "2026-11-30T10:00:07.250Z warn  pod annotation patch failed error=ApiException",
    ]


def test_json_when_configured() -> None:
    out = io.StringIO()
    logs.configure(out, env={"AI_MODELS_LOG_FORMAT": "json"}, clock=lambda: T0)
    structlog.get_logger("worker").info("published", digest="sha256:ab", size=5)
    structlog.reset_defaults()
    assert json.loads(out.getvalue()) == {
        "event": "published",
        "digest": "sha256:ab",
        "size": 5,
        "level": "info",
        "timestamp": "2026-11-30T10:00:07.250Z",
    }
    assert logs.log_format({"AI_MODELS_LOG_FORMAT": "yaml"}) == "text"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_read_like_a_progress_log(stream: io.StringIO) -> None:
    total = int(87.3 * (1 << 20))
    clock = Clock()
    reporter = ProgressReporter(total, None, interval=1.0, clock=clock, tty=None)
    reporter._tty = None  # a terminal running the tests must not turn the lines into a bar
    reporter.stage("transfer")
    reporter.file_started("model.safetensors", total)
    clock.now = 104.0
    reporter.advance("model.safetensors", int(32.1 * (1 << 20)))
    clock.now = 110.0
    reporter.advance("model.safetensors", total - int(32.1 * (1 << 20)))
    reporter.stage("config")
    reporter.stage("manifest")
    lines = stream.getvalue().splitlines()
    assert lines == [
        "2026-11-30T10:00:07.250Z info  transfer 0% 0.0/87.3 MiB",
        "2026-11-30T10:00:07.250Z info  transfer model.safetensors 36% 32.1/87.3 MiB "
        "8.0 MiB/s ETA 7s",
        "2026-11-30T10:00:07.250Z info  transfer model.safetensors 100% 87.3/87.3 MiB",
        # The config and manifest stages name no file.
        "2026-11-30T10:00:07.250Z info  config 100% 87.3/87.3 MiB",
        "2026-11-30T10:00:07.250Z info  manifest 100% 87.3/87.3 MiB",
    ]


def test_the_termination_message_carries_the_tail_within_4_kib(stream: io.StringIO) -> None:
    log = structlog.get_logger("worker")
    for i in range(12):
        log.info(f"step {i}", header="Authorization: Bearer abc123" if i == 11 else None)
    payload = logs.with_tail({"reason": "SourceUnavailable", "message": "503"})
    assert payload == {
        "reason": "SourceUnavailable",
        "message": "503",
        "log": [f"2026-11-30T10:00:07.250Z info  step {i}" for i in range(2, 11)]
        + ['2026-11-30T10:00:07.250Z info  step 11 header="Authorization: Bearer [redacted]"'],
    }
    for _ in range(10):
        log.info("x" * 390)
    long = logs.with_tail({"reason": "R", "message": "m" * 3000})
    assert len(json.dumps(long, ensure_ascii=True)) <= 4096
    assert 0 < len(long["log"]) < 5


def test_the_result_line_is_timestamped(stream: io.StringIO) -> None:
    logs.result({"artifact": {"digest": "sha256:ab", "sizeBytes": 5}})
    assert stream.getvalue() == (
        "2026-11-30T10:00:07.250Z info  result on stdout digest=sha256:ab size=5\n"
    )


class Annotations:
    def __init__(self) -> None:
        self.patches: list[dict[str, str]] = []

    def patch(self, annotations: dict[str, str]) -> bool:
        self.patches.append(annotations)
        return True


def test_the_config_and_manifest_stages_report_no_file(stream: io.StringIO) -> None:
    pod = Annotations()
    clock = Clock()
    reporter = ProgressReporter(10, pod, interval=1.0, clock=clock, tty=None)
    reporter.stage("transfer")
    reporter.file_started("model.safetensors", 10)
    clock.now = 102.0
    reporter.advance("model.safetensors", 10)
    reporter.stage("config")
    reporter.stage("manifest")
    details = [json.loads(p["ai.deckhouse.io/progress-detail"]) for p in pod.patches]
    assert [(d["stage"], d.get("file")) for d in details] == [
        ("transfer", None),
        ("transfer", "model.safetensors"),
        ("config", None),
        ("manifest", None),
    ]
