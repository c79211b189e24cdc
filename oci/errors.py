"""The registry client's errors. Each component maps them to its own reasons at its boundary
(the worker to ``worker.errors``, the controller to ``RegistryError``/``ConfigError``, the
delivery endpoint to an HTTP answer); nothing here knows about Kubernetes or exit codes.

    OciError
    ├── InvalidReference        the string is not ``host[:port]/repository[:tag][@digest]``
    │                           (also a ``ValueError``: the caller wrote it wrong)
    ├── CredentialsInvalid      a docker config or token file that cannot be used; the message
    │                           names the file (and the registry host), never its content
    └── RegistryError           the registry (or its token realm) said no or was not reached
        ├── Unauthorized        401/403, an UNAUTHORIZED/DENIED code, or a token realm that
        │                       refused, returned no token or would receive secrets in clear
        ├── Refused             any other 4xx; ``status`` and the registry's error ``codes``
        ├── BadResponse         an answer that cannot be used: a manifest over the bound or
        │                       hashing to another digest, a range other than asked, no Location
        ├── TlsFailure          the registry's certificate does not verify (retrying cannot help)
        └── Unavailable         5xx, 429 or the network, after the client's retries
"""

from __future__ import annotations


class OciError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidReference(OciError, ValueError):  # noqa: N818 - "you called it wrong"
    """The string is not an OCI reference this client accepts."""


class CredentialsInvalid(OciError):  # noqa: N818
    """A credentials file that exists (or is named) but cannot be used."""


class RegistryError(OciError):
    """Base of the registry's (and its token realm's) answers and of network failures."""


class Unauthorized(RegistryError):  # noqa: N818
    """``status`` is None when no answer of the registry said so (a realm we will not use)."""

    def __init__(self, message: str, status: int | None = None, server_message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message
        """The registry's own ``errors[].message`` (bounded), for callers that name the refusal."""


class Refused(RegistryError):  # noqa: N818
    def __init__(self, message: str, status: int, codes: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class BadResponse(RegistryError):  # noqa: N818
    pass


class TlsFailure(RegistryError):  # noqa: N818
    pass


class Unavailable(RegistryError):  # noqa: N818
    """``status`` is the last HTTP status (None when the network failed)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
