"""A server's process life (``serve_until_signalled``): a bad configuration exits 2 with the
program's name; SIGTERM stops a started server through its ``stop`` and exits 0."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from controller.httpserver import serve_until_signalled


@pytest.fixture(autouse=True)
def _signal_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


class _Server:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def server_close(self) -> None:
        self.calls.append("server_close")


def test_a_configuration_error_exits_2_naming_the_program(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def build() -> _Server:
        raise ValueError("no registry host")

    def started(server: _Server) -> None:
        raise AssertionError("never started")

    code = serve_until_signalled("prog", build, (ValueError,), started)

    assert code == 2
    assert capsys.readouterr().err == "prog: no registry host\n"


def test_sigterm_stops_the_started_server_and_exits_0() -> None:
    server = _Server()

    def started(running: _Server) -> None:
        running.calls.append("started")
        os.kill(os.getpid(), signal.SIGTERM)

    code = serve_until_signalled("prog", lambda: server, (ValueError,), started)

    assert code == 0
    assert server.calls == ["start", "started", "shutdown", "server_close"]


def test_a_custom_stop_replaces_the_shutdown() -> None:
    server = _Server()

    def started(running: _Server) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    def stop(running: _Server) -> None:
        running.calls.append("drained")

    code = serve_until_signalled("prog", lambda: server, (ValueError,), started, stop)

    assert code == 0
    assert server.calls == ["start", "drained"]
