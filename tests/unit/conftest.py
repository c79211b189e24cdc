"""The unit suite needs no network: an Internet socket that connects, binds or resolves a name
fails the test at once. And it writes nothing into the checkout, and each test leaves the
logging configuration as it found it.

Unit tests play remote services with fakes (``httpx2.MockTransport``, requests transport
adapters, in-memory registries); the real services are for tests/integration. The guard raises
``pytest.fail``'s exception, which no ``except Exception`` in the code under test can swallow,
and leaves Unix sockets alone (socket pairs, the standard library's own wake-up pipes).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

_INTERNET = (socket.AF_INET, socket.AF_INET6)

# Hypothesis keeps caches in ./.hypothesis by default; the temp directory keeps a run from writing
# into the checkout (which may be read-only).
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "ai-models-hypothesis")
)


def _refuse(what: str, target: object) -> None:
    pytest.fail(f"a unit test used the network: {what} {target!r}; use a fake", pytrace=True)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    connect, connect_ex, bind = socket.socket.connect, socket.socket.connect_ex, socket.socket.bind

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in _INTERNET:
            _refuse("connect to", address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in _INTERNET:
            _refuse("connect to", address)
        return connect_ex(self, address)

    def guarded_bind(self: socket.socket, address: Any) -> None:
        if self.family in _INTERNET:
            _refuse("bind to", address)
        bind(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse("resolve", host)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket.socket, "bind", guarded_bind)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that runs a CLI's ``main`` configures structlog to print to the stream pytest
    captured for that test; later tests, in any order, must not log into that closed stream."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
