"""Upload progress on stderr: a bar redrawn in place on a terminal (bytes, rate, ETA), a plain
line every few seconds otherwise (CI logs, pipes). The clock is injectable for the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 28
REDRAW_SECONDS = 0.2
LINE_SECONDS = 5.0
RATE_WINDOW_SECONDS = 10.0


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressReporter:
    """``start`` → ``update``… → ``finish``; ``note`` prints a line without breaking the bar."""

    def __init__(
        self,
        stream: TextIO,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._clock = clock
        self._total = 0
        self._samples: list[tuple[float, int]] = []
        self._last_draw = float("-inf")
        self._drawn = False

    def start(self, total: int, at: int) -> None:
        self._total = total
        self._samples = [(self._clock(), at)]
        if at:
            self.note(f"resuming at {human_bytes(at)} of {human_bytes(total)}")

    def _rate(self, now: float, done: int) -> float:
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_SECONDS:
            self._samples.pop(0)
        then, before = self._samples[0]
        return (done - before) / (now - then) if now > then else 0.0

    def describe(self, done: int, rate: float) -> str:
        percent = 100 * done // self._total if self._total else 100
        eta = human_duration((self._total - done) / rate) if rate > 0 else "?"
        return (
            f"{human_bytes(done)} / {human_bytes(self._total)} ({percent}%), "
            f"{human_bytes(rate)}/s, ETA {eta}"
        )

    def update(self, done: int) -> None:
        now = self._clock()
        rate = self._rate(now, done)
        final = done >= self._total
        if now - self._last_draw < (REDRAW_SECONDS if self._tty else LINE_SECONDS) and not final:
            return
        self._last_draw = now
        if self._tty:
            filled = BAR_WIDTH * done // self._total if self._total else BAR_WIDTH
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self._stream.write(f"\r[{bar}] {self.describe(done, rate)}\x1b[K")
            self._drawn = True
        else:
            self._stream.write(f"uploaded {self.describe(done, rate)}\n")
        self._stream.flush()

    def note(self, message: str) -> None:
        self._break_line()
        self._stream.write(message + "\n")
        self._stream.flush()

    def _break_line(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._drawn = False

    def finish(self) -> None:
        self._break_line()
        self._stream.flush()
