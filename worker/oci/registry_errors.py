"""The worker's side of the shared registry client (``oci``): its errors become the worker's
reasons here, at the boundary of the two places that talk to a registry (the registry target
of ``prepare`` and the registry origin of ``materialize``).

    oci.errors                     worker.errors
    Unauthorized                   RegistryAuthRefusal (a RegistryUnauthorized with the status)
    CredentialsInvalid             RegistryUnauthorized
    Refused                        RegistryRefusal (a RegistryRejected with status and codes)
    BadResponse, TlsFailure        RegistryRejected
    Unavailable                    RegistryUnavailable
    InvalidReference               passes through (the CLI reports InvalidDestination)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from oci import errors
from worker.errors import RegistryRejected, RegistryUnauthorized, RegistryUnavailable, WorkerError


class RegistryRefusal(RegistryRejected):
    """A 4xx other than auth; keeps the status and the registry's error codes for callers."""

    def __init__(self, message: str, status: int, codes: frozenset[str]) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class RegistryAuthRefusal(RegistryUnauthorized):
    """401/403 (or an UNAUTHORIZED/DENIED code); keeps the status and the server's own message
    (``errors[].message``) for callers that name the refusal themselves (``materialize-pod``)."""

    def __init__(self, message: str, status: int | None, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


def worker_error(error: errors.OciError) -> WorkerError:
    """The one table from the client's errors to the worker's reasons."""
    message = error.message
    if isinstance(error, errors.Unauthorized):
        return RegistryAuthRefusal(message, error.status, error.server_message)
    if isinstance(error, errors.CredentialsInvalid):
        return RegistryUnauthorized(message)
    if isinstance(error, errors.Refused):
        return RegistryRefusal(message, error.status, error.codes)
    if isinstance(error, errors.Unavailable):
        return RegistryUnavailable(message)
    return RegistryRejected(message)


@contextlib.contextmanager
def registry_errors() -> Iterator[None]:
    """Raises the worker's error for any client error inside (the cause chained)."""
    try:
        yield
    except errors.InvalidReference:
        raise
    except errors.OciError as error:
        raise worker_error(error) from error


def mapped_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` with the client's errors of a streamed body mapped as they arrive."""
    with registry_errors():
        yield from chunks
