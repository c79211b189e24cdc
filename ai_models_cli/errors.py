"""The CLI's errors: each one says what to do, and maps to an exit code.

    CliError                      exit_code; str() is what the user reads
    ├── UsageError                2  the arguments or the PATH cannot be used (symlink, FIFO, …)
    ├── PayloadChanged            2  a file changed size while it was being sent
    ├── KubeError                 1  the API server failed (transient)
    │   ├── ObjectNotFound        2  no such Model/ClusterModel or Secret
    │   └── Forbidden             2  the kubeconfig's user may not read it
    ├── NotAnUpload               2  the object's source is not spec.source.upload
    ├── SessionTimeout            1  no session (WaitForUpload) within --timeout
    ├── GatewayError              the gateway's ``code: message``, exactly
    │   ├── permanent             2  401, 410, 413, 400 (and any other 4xx)
    │   └── transient             1  429, 5xx, after the retries
    ├── GatewayUnreachable        1  connection errors, after the retries
    └── ModelFailed               1  the object went Failed: reason and message

Exit 130 after Ctrl-C (the upload stays resumable). Usage errors of argparse exit 2 too.
"""

from __future__ import annotations

from typing import ClassVar

PERMANENT_EXIT = 2
TRANSIENT_EXIT = 1
INTERRUPTED_EXIT = 130


class CliError(Exception):
    exit_code: ClassVar[int] = TRANSIENT_EXIT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(CliError):
    exit_code = PERMANENT_EXIT


class PayloadChanged(CliError):  # noqa: N818 - what happened
    exit_code = PERMANENT_EXIT


class KubeError(CliError):
    exit_code = TRANSIENT_EXIT


class ObjectNotFound(KubeError):  # noqa: N818 - what happened
    exit_code = PERMANENT_EXIT


class Forbidden(KubeError):  # noqa: N818 - what happened
    exit_code = PERMANENT_EXIT


class NotAnUpload(CliError):  # noqa: N818 - what the object is
    exit_code = PERMANENT_EXIT


class SessionTimeout(CliError):  # noqa: N818 - what happened
    exit_code = TRANSIENT_EXIT


class GatewayError(CliError):
    """An error answer of the gateway; ``str()`` is its ``code: message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.retry_after = retry_after
        """``Retry-After`` of a 429 or 503, seconds."""
        self.offset = offset
        """``Upload-Offset`` of an ``OffsetMismatch``: where the gateway is."""

    @property
    def transient(self) -> bool:
        return self.status == 429 or self.status >= 500

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return TRANSIENT_EXIT if self.transient else PERMANENT_EXIT


class GatewayUnreachable(CliError):  # noqa: N818 - what the gateway is
    exit_code = TRANSIENT_EXIT


class ModelFailed(CliError):  # noqa: N818 - what happened
    exit_code = TRANSIENT_EXIT
