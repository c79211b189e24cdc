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
    │   ├── InvalidWeights           a weight or config file is malformed or out of bounds
    │   ├── RegistryUnauthorized     the OCI registry refused our credentials (401/403)
    │   ├── RegistryRejected         the OCI registry refused a request (4xx: bad name, not found…)
    │   ├── InvalidSource            the source string is not a supported URL or local path
    │   ├── InsufficientStorage      the local disk filled up (ENOSPC/EDQUOT) while writing
    │   ├── UnsupportedArtifact      an OCI artifact materialize cannot read (not ModelPack)
    │   ├── DestinationNotADirectory materialize --to names something that is not a directory
    │   ├── UnsafeDestination        a link, FIFO or device sits where materialize writes in DIR
    │   ├── InvalidModelDigests      materialize-pod: the pod's digests file is missing or malformed
    │   ├── DeliveryUnauthorized     materialize-pod: the delivery endpoint refused the token (401)
    │   ├── DeliveryForbidden        materialize-pod: the token may not fetch this model (403)
    │   ├── UploadRejected           an uploaded archive breaks a rule of the unpacker
    │   ├── CatalogDigestMismatch    a catalog import: the remote manifest or a blob is not what
    │   │                            its digest names (nothing is tagged locally)
    │   └── CatalogUnauthorized      a catalog import: the grant (renewed once) is refused
    └── TransientError               exit code 1: the Job retries the pod
        ├── SourceUnavailable        the source answered 5xx, timed out or reset the connection
        └── RegistryUnavailable      the OCI registry answered 5xx or could not be reached

Class names deliberately equal their reasons (hence the ``noqa: N818`` on each leaf), so that
a reason read in a status can be found in the code with one search.
"""

from __future__ import annotations

import errno
import json
from typing import ClassVar, TypeGuard

from api.protocol import PERMANENT_EXIT_CODE, TRANSIENT_EXIT_CODE

# The kubelet keeps at most 4096 bytes of /dev/termination-log. The message's JSON encoding
# (ASCII-escaped, which is never shorter than UTF-8) is held to this many bytes, leaving room
# for the reason and the punctuation, so we cut it visibly rather than the kubelet mid-JSON.
MAX_TERMINATION_MESSAGE_BYTES = 3584
_TRUNCATION_MARK = " …(truncated)"


def _fit_termination_log(message: str) -> str:
    if len(json.dumps(message)) <= MAX_TERMINATION_MESSAGE_BYTES:
        return message
    shortest, longest = 0, len(message)  # binary search for the longest prefix that fits
    while shortest < longest:
        middle = (shortest + longest + 1) // 2
        if len(json.dumps(message[:middle] + _TRUNCATION_MARK)) <= MAX_TERMINATION_MESSAGE_BYTES:
            shortest = middle
        else:
            longest = middle - 1
    return message[:shortest] + _TRUNCATION_MARK


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
        """The ``{reason, message}`` object written to /dev/termination-log (fits its 4 KiB)."""
        return {"reason": self.reason, "message": _fit_termination_log(self.message)}


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


class RegistryUnauthorized(PermanentError):  # noqa: N818
    reason = "RegistryUnauthorized"


class RegistryRejected(PermanentError):  # noqa: N818
    reason = "RegistryRejected"


class InvalidSource(PermanentError):  # noqa: N818
    reason = "InvalidSource"


class InsufficientStorage(PermanentError):  # noqa: N818
    """The disk the worker writes to (a layout directory, the materialize directory, the
    workspace) has no space or quota left. Permanent: the space a model needs is fixed, so a
    retried pod would download the same bytes again only to stop at the same point; a person has
    to free space or give the worker a larger volume, then retry."""

    reason = "InsufficientStorage"


OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_out_of_space(error: BaseException) -> TypeGuard[OSError]:
    """True for the ``OSError`` of a full disk or an exhausted quota."""
    return isinstance(error, OSError) and error.errno in OUT_OF_SPACE_ERRNOS


class UnsupportedArtifact(PermanentError):  # noqa: N818
    """The artifact is valid OCI but not one materialize understands: no ModelPack config, or a
    layer media type outside the ModelPack set. Republish it as a ModelPack artifact."""

    reason = "UnsupportedArtifact"


class DestinationNotADirectory(PermanentError):  # noqa: N818
    """``materialize --to`` names an existing file that is not a directory."""

    reason = "DestinationNotADirectory"


class UnsafeDestination(PermanentError):  # noqa: N818
    """A symlink, FIFO, device, socket (or a directory where a file goes) sits at a path
    materialize writes inside its directory; it never writes through such a thing."""

    reason = "UnsafeDestination"


class InvalidModelDigests(PermanentError):  # noqa: N818
    """``materialize-pod``: the digests file (the pod's ``ai.deckhouse.io/model-digests``
    annotation through the downward API) is missing, too large or not the expected JSON."""

    reason = "InvalidModelDigests"


class DeliveryUnauthorized(PermanentError):  # noqa: N818
    """``materialize-pod``: the delivery endpoint did not accept the pod's token (401: expired,
    another audience, not bound to a pod)."""

    reason = "DeliveryUnauthorized"


class DeliveryForbidden(PermanentError):  # noqa: N818
    """``materialize-pod``: the delivery endpoint knows the pod but refuses this model (403); the
    message is the endpoint's reason (another namespace's Model, not named by the pod, not
    Ready)."""

    reason = "DeliveryForbidden"


class UploadRejected(PermanentError):  # noqa: N818
    """An uploaded archive the unpacker refuses (``worker/archive.py``): a link, a device, a
    path leaving the directory, a duplicate name, too many members, a decompression bomb, a
    truncated stream, an encrypted zip entry… The message names the archive and the member."""

    reason = "UploadRejected"


class CatalogDigestMismatch(PermanentError):  # noqa: N818
    """A catalog import: the remote registry served a manifest whose sha256 is not the entry's
    digest, or a blob whose bytes do not hash to the digest the manifest lists. Nothing is
    tagged locally; the catalog's artifact has to be fixed (or the entry republished)."""

    reason = "CatalogDigestMismatch"


class CatalogUnauthorized(PermanentError):  # noqa: N818
    """A catalog import: the catalog refused to issue a grant, or its registry refused a grant
    that was just renewed (the catalog token or the server's grant key is wrong)."""

    reason = "CatalogUnauthorized"
