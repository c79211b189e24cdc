"""Progress of a preparation, for the user: pod annotations, log lines, a TTY bar.

``ProgressReporter`` implements the publisher's ``ProgressSink``. It counts bytes done across
files in flight, derives a rate (over a sliding window) and an ETA, and reports:

- in a pod: ``ai.deckhouse.io/progress`` (integer percent) and
  ``ai.deckhouse.io/progress-detail`` (``api.protocol.ProgressDetail``: ``{stage, bytesDone,
  bytesTotal, bytesPerSecond, file}``) on its own pod, at most once per interval plus once per
  stage change;
- always: a log line per report, so ``kubectl logs`` reads like a progress log
  (``transfer model.safetensors 37% 32.1/87.3 MiB 8.1 MiB/s ETA 7s``; the JSON format keeps the
  figures under ``progress``);
- on a TTY without a pod: a one-line bar on stderr instead of the log lines.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

import structlog

from api.protocol import ANNOTATION_PROGRESS, ANNOTATION_PROGRESS_DETAIL, ProgressDetail
from worker.podreport import Annotator

RATE_WINDOW_SECONDS = 10.0
log = structlog.get_logger("progress")


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _eta(seconds: int) -> str:
    minutes, secs = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(detail: ProgressDetail, percent: int) -> str:
    """``transfer model.safetensors 37% 32.1/87.3 MiB 8.1 MiB/s ETA 7s``; a stage without bytes
    to count (``inspecting``) is its name alone, a stage without a file names none."""
    done, total, rate = detail.bytes_done, detail.bytes_total, detail.bytes_per_second
    parts = [str(detail.stage)]
    if detail.file:
        parts.append(detail.file)
    if isinstance(total, int) and total > 0 and isinstance(done, int):
        parts.append(f"{percent}% {done / (1 << 20):.1f}/{_mib(total)}")
        if isinstance(rate, int) and rate > 0 and done < total:
            parts.append(f"{_mib(rate)}/s ETA {_eta(round((total - done) / rate))}")
    return " ".join(parts)


class ProgressReporter:
    def __init__(
        self,
        total_bytes: int,
        annotator: Annotator | None,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        tty: TextIO | None = None,
    ) -> None:
        self._total = max(total_bytes, 0)
        self._annotator = annotator
        self._interval = interval
        self._clock = clock
        self._tty = (
            tty
            if tty is not None
            else (sys.stderr if sys.stderr.isatty() and annotator is None else None)
        )
        self._lock = threading.Lock()
        self._done = 0
        self._stage = "starting"
        self._file: str | None = None
        self._sizes: dict[str, int] = {}
        self._samples: deque[tuple[float, int]] = deque()
        self._last_report = float("-inf")
        self.reports = 0

    # ---- ProgressSink ----------------------------------------------------------------------------

    def stage(self, name: str) -> None:
        with self._lock:
            changed = name != self._stage
            self._stage = name
            if changed:
                self._file = None  # the config and manifest stages belong to no file
        if changed:
            self.report(force=True)

    def file_started(self, path: str, size: int) -> None:
        with self._lock:
            self._file = path
            self._sizes[path] = size

    def advance(self, path: str, nbytes: int) -> None:
        with self._lock:
            self._done = (
                min(self._done + nbytes, self._total) if self._total else self._done + nbytes
            )
            self._file = path
        self.report()

    def file_done(self, path: str, skipped: bool) -> None:
        if skipped:
            size = self._sizes.get(path, 0)
            log.info("already at the destination, not transferred", file=path, size=_mib(size))
            with self._lock:
                self._done = min(self._done + size, self._total)
            self.report()

    # ---- figures ---------------------------------------------------------------------------------

    def percent(self) -> int:
        with self._lock:
            if not self._total:
                return 0
            return min(self._done * 100 // self._total, 100)

    def _rate(self, now: float) -> float | None:
        self._samples.append((now, self._done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_SECONDS:
            self._samples.popleft()
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None

    def detail(self, now: float) -> ProgressDetail:
        with self._lock:
            rate = self._rate(now)
            return ProgressDetail(
                stage=self._stage,
                bytes_done=self._done,
                bytes_total=self._total,
                bytes_per_second=round(rate) if rate is not None else None,
                file=self._file,
            )

    def report(self, force: bool = False) -> None:
        now = self._clock()
        with self._lock:
            if not force and now - self._last_report < self._interval:
                return
            self._last_report = now
        detail, percent = self.detail(now), self.percent()
        self.reports += 1
        if self._annotator is not None:
            self._annotator.patch(
                {
                    ANNOTATION_PROGRESS: str(percent),
                    ANNOTATION_PROGRESS_DETAIL: detail.to_annotation(),
                }
            )
        self._print(detail, percent)

    def _print(self, detail: ProgressDetail, percent: int) -> None:
        done, total, rate = detail.bytes_done or 0, detail.bytes_total or 0, detail.bytes_per_second
        eta = None
        if isinstance(rate, int) and rate > 0:
            eta = round((total - done) / rate)
        if self._tty is not None:
            width = 30
            filled = width * percent // 100
            bar = "#" * filled + "-" * (width - filled)
            speed = f" {_mib(rate)}/s" if isinstance(rate, int) else ""
            self._tty.write(
                f"\r[{bar}] {percent:3d}% {_mib(done)}/{_mib(total)}{speed} {detail.stage}   "
            )
            self._tty.flush()
            return
        log.info(
            progress_line(detail, percent),
            progress={
                "stage": detail.stage,
                "file": detail.file,
                "percent": percent,
                "bytesDone": done,
                "bytesTotal": total,
                "bytesPerSecond": rate,
                "etaSeconds": eta,
            },
        )
