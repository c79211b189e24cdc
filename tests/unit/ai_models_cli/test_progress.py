"""Progress on stderr: a bar on a terminal, a line every few seconds otherwise (fake clock)."""

from __future__ import annotations

import io

from ai_models_cli.progress import ProgressReporter, human_bytes, human_duration

MIB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_every_five_seconds_with_rate_and_eta() -> None:
    stream, clock = io.StringIO(), Clock()
    reporter = ProgressReporter(stream, tty=False, clock=clock)
    reporter.start(100 * MIB, 0)
    for second in range(1, 11):
        clock.now += 1
        reporter.update(second * 5 * MIB)
    reporter.finish()
    assert stream.getvalue().splitlines() == [
        "uploaded 5.0 MiB / 100.0 MiB (5%), 5.0 MiB/s, ETA 0:19",
        "uploaded 30.0 MiB / 100.0 MiB (30%), 5.0 MiB/s, ETA 0:14",
    ]


def test_the_last_update_is_always_shown() -> None:
    stream, clock = io.StringIO(), Clock()
    reporter = ProgressReporter(stream, tty=False, clock=clock)
    reporter.start(10 * MIB, 4 * MIB)
    clock.now += 1
    reporter.update(5 * MIB)
    clock.now += 1
    reporter.update(10 * MIB)
    assert stream.getvalue().splitlines() == [
        "resuming at 4.0 MiB of 10.0 MiB",
        "uploaded 5.0 MiB / 10.0 MiB (50%), 1.0 MiB/s, ETA 0:05",
        "uploaded 10.0 MiB / 10.0 MiB (100%), 3.0 MiB/s, ETA 0:00",
    ]


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_notes_break_it() -> None:
    stream, clock = io.StringIO(), Clock()
    reporter = ProgressReporter(stream, tty=True, clock=clock)
    reporter.start(4 * MIB, 0)
    clock.now += 1
    reporter.update(MIB)
    reporter.note("RegistryUnavailable: down; retrying in 1 s (1/8)")
    reporter.finish()
    assert stream.getvalue() == (
        "\r[#######---------------------] 1.0 MiB / 4.0 MiB (25%), 1.0 MiB/s, ETA 0:03\x1b[K\n"
        "RegistryUnavailable: down; retrying in 1 s (1/8)\n"
    )


def test_units() -> None:
    assert [human_bytes(n) for n in (512, 1536, 5 * MIB, 3 << 30, 2 << 40)] == [
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
        "2048.0 GiB",
    ]
    assert [human_duration(s) for s in (5, 75, 3725)] == ["0:05", "1:15", "1:02:05"]
