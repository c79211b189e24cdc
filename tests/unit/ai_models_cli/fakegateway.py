"""An in-memory upload gateway with the ``GatewayClient`` interface, and scripted failures."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ai_models_cli.errors import GatewayError, GatewayUnreachable
from ai_models_cli.gateway import GatewayClient, UploadState
from api.upload import CommitResult

Fault = Callable[["FakeGateway", int, bytes], None]


class FakeGateway(GatewayClient):
    """Holds one upload's bytes; ``faults`` run before the matching PATCH (by call number)."""

    def __init__(self, url: str = "http://gw/v1/uploads/upload-x", token: str = "t") -> None:  # noqa: S107
        super().__init__(url, token)
        self.token = token
        self.filename: str | None = None
        self.length: int | None = None
        self.data = bytearray()
        self.calls: list[str] = []
        self.patched: list[tuple[int, int]] = []
        self.faults: dict[int, Fault] = {}
        self.commit_faults: list[Exception] = []
        self.committed: CommitResult | None = None
        self.head_error: Exception | None = None

    def head(self) -> UploadState | None:
        self.calls.append("HEAD")
        if self.head_error is not None:
            raise self.head_error
        if self.filename is None:
            return None
        return UploadState(len(self.data), self.length, self.filename)

    def start(self, filename: str, length: int) -> int:
        self.calls.append("POST")
        self.filename, self.length, self.data = filename, length, bytearray()
        return 0

    def append(self, offset: int, data: bytes) -> int:
        number = sum(1 for c in self.calls if c == "PATCH")
        self.calls.append("PATCH")
        fault = self.faults.get(number)
        if fault is not None:
            fault(self, offset, data)
        if offset != len(self.data):
            raise GatewayError(409, "OffsetMismatch", "not there", offset=len(self.data))
        self.data += data
        self.patched.append((offset, len(data)))
        return len(self.data)

    def commit(self, sha256: str, size: int) -> CommitResult:
        self.calls.append("COMMIT")
        if self.commit_faults:
            raise self.commit_faults.pop(0)
        if self.committed is not None:
            raise GatewayError(409, "AlreadyCommitted", "the upload is committed")
        digest = hashlib.sha256(self.data).hexdigest()
        if digest != sha256 or size != len(self.data):
            raise GatewayError(400, "DigestMismatch", f"sha256:{digest} is not sha256:{sha256}")
        self.committed = CommitResult(
            digest=f"sha256:{digest}", size=size, filename=self.filename or ""
        )
        return self.committed


def cut_after(count: int) -> Fault:
    """The connection breaks after ``count`` bytes of the PATCH reached the gateway."""

    def fault(gateway: FakeGateway, offset: int, data: bytes) -> None:
        if offset == len(gateway.data):
            gateway.data += data[:count]
        raise GatewayUnreachable("http://gw: ConnectionError: reset by peer")

    return fault


def answer(status: int, code: str) -> Fault:
    def fault(gateway: FakeGateway, offset: int, data: bytes) -> None:
        raise GatewayError(status, code, f"{code} for the test")

    return fault
