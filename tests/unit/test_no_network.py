"""The guard of tests/unit/conftest.py: the unit suite cannot reach a network by accident."""

from __future__ import annotations

import socket

import pytest


def test_an_internet_connection_fails_the_test() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(pytest.fail.Exception, match=r"used the network: connect to \('192"):
            sock.connect(("192.0.2.1", 9))
        with pytest.raises(pytest.fail.Exception, match="used the network: connect to"):
            sock.connect_ex(("192.0.2.1", 9))
        with pytest.raises(pytest.fail.Exception, match="used the network: bind to"):
            sock.bind(("127.0.0.1", 0))


def test_a_name_lookup_fails_the_test() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"used the network: resolve 'example\.org'"):
        socket.create_connection(("example.org", 443))


def test_unix_sockets_still_work() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
