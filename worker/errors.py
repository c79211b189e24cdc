"""The worker's errors: one class per failure reason the user sees in the object's status.

Every class below is named after its ``reason``, which is exactly the condition reason the
controller writes into status and the ``reason`` of the worker's termination message. Whether a
failure is ``permanent`` decides the exit code: a permanent failure (the source or its files are
wrong; retrying cannot help) exits with 2 and the Job's ``podFailurePolicy`` fails the Job at
once; a transient one exits with 1 and the Job retries the pod.

    WorkerError                      reason, permanent, to_termination_message()
    ├── PermanentError               exit code 2: fix the source, then retry
    │   ├── SourceNotFound           the repository / image / upload does not exist
    │   ├── SourceUnauthorized       the credentials are missing or do not grant access
    │   ├── RevisionNotFound         the branch, tag or commit does not exist in the source
    │   ├── NoSupportedWeights       no safetensors or GGUF weights in the source
    │   ├── AmbiguousFormat          several weight sets (e.g. GGUF quantizations), none chosen
    │   └── InvalidWeights           a weight or config file is malformed or out of bounds
    └── TransientError               exit code 1: the Job retries the pod
        ├── SourceUnavailable        the source answered 5xx, timed out or reset the connection
        └── RegistryUnavailable      the OCI registry answered 5xx or could not be reached

Class names deliberately equal their reasons (hence the ``noqa: N818`` on each leaf), so that
a reason read in a status can be found in the code with one search.
"""

from __future__ import annotations

from typing import ClassVar

PERMANENT_EXIT_CODE = 2
"""Exit code of a permanent failure; the Job's podFailurePolicy fails the Job on it."""
TRANSIENT_EXIT_CODE = 1
"""Exit code of a transient failure; the Job retries the pod."""

# The kubelet keeps at most 4096 bytes of /dev/termination-log; leave room for the reason and
# the JSON punctuation so the message is cut by us, visibly, rather than mid-JSON by the kubelet.
MAX_TERMINATION_MESSAGE_CHARS = 3000


class WorkerError(Exception):
    """Base of every failure the worker reports to the controller."""

    reason: ClassVar[str]
    """CamelCase reason, exactly the status condition reason."""
    permanent: ClassVar[bool]
    """True when retrying cannot help (exit code 2), False when the Job should retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def exit_code(self) -> int:
        return PERMANENT_EXIT_CODE if self.permanent else TRANSIENT_EXIT_CODE

    def to_termination_message(self) -> dict[str, str]:
        """The ``{reason, message}`` JSON object written to /dev/termination-log."""
        message = self.message
        if len(message) > MAX_TERMINATION_MESSAGE_CHARS:
            message = message[: MAX_TERMINATION_MESSAGE_CHARS - 14] + " …(truncated)"
        return {"reason": self.reason, "message": message}


class PermanentError(WorkerError):
    """The source or its files are wrong: the Job fails at once and the object is Failed."""

    permanent = True


class TransientError(WorkerError):
    """A remote service is unavailable for now: the Job retries the pod with backoff."""

    permanent = False


class SourceNotFound(PermanentError):  # noqa: N818
    reason = "SourceNotFound"


class SourceUnauthorized(PermanentError):  # noqa: N818
    reason = "SourceUnauthorized"


class RevisionNotFound(PermanentError):  # noqa: N818
    reason = "RevisionNotFound"


class NoSupportedWeights(PermanentError):  # noqa: N818
    reason = "NoSupportedWeights"


class AmbiguousFormat(PermanentError):  # noqa: N818
    reason = "AmbiguousFormat"


class InvalidWeights(PermanentError):  # noqa: N818
    reason = "InvalidWeights"


class SourceUnavailable(TransientError):  # noqa: N818
    reason = "SourceUnavailable"


class RegistryUnavailable(TransientError):  # noqa: N818
    reason = "RegistryUnavailable"
