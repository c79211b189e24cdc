"""The controller's errors.

    ControllerError
    ├── KubeError                    an API server answer that is not success
    │   ├── NotFound                 404: for a reconcile, the object is gone — success
    │   ├── Conflict                 409: stale resourceVersion or already exists — requeue now
    │   ├── Gone                     410: a watch's resourceVersion expired — relist
    │   ├── Forbidden                403: RBAC refuses; a packaging bug, logged loudly with
    │   │                            the permission it lacks (``Forbidden.permission``)
    │   └── ApiUnavailable           5xx, timeouts, connection errors — retried with backoff
    ├── RegistryError                the OCI registry refused or could not be reached
    ├── JobRenderFailed              the attempt's Job could not be built, or the API server
    │                                rejected it as invalid: terminal for this attempt (reason)
    ├── PreparationBlocked           the object cannot get a Job yet for a reason the user can
    │   │                            fix (reason is the Ready condition's reason)
    │   ├── AuthSecretNotFound       authSecretRef names a Secret that does not exist
    │   ├── AuthSecretInvalid        the Secret has no non-empty ``token`` key
    │   └── AuthSecretForbidden      the controller may not read it (its namespace is not in
    │                                the chart's controller.authSecretNamespaces)
    └── CatalogError                 a ModelCatalogSource cannot be refreshed, or a catalog
        │                            answered a grant with a refusal (``reason`` is the
        │                            condition reason; docs/catalog.md)
        ├── CatalogSourceInvalid     the source's own spec or Secrets: fixed by the user,
        │   │                        rechecked on a change or on the failure backoff
        │   ├── InvalidCatalogURL          not https, or with userinfo, query or fragment
        │   ├── InvalidRefreshInterval     not a duration of at least 30 s
        │   ├── CredentialsSecretNotFound  credentialsSecretName names no Secret
        │   ├── CredentialsSecretInvalid   no usable ``token`` key
        │   └── CASecretInvalid            missing, or ``ca.crt`` is not PEM certificates
        ├── CatalogUnreachable       connection, timeout, 5xx: transient
        │   └── CatalogBusy          429/503 with ``Retry-After`` (``retry_after`` seconds)
        ├── CatalogUnauthorized      401/403: the token is refused
        ├── CatalogTLSError          the certificate does not verify against the CA
        ├── CatalogMalformed         not a protocol v1 answer: bad JSON or schema, too large,
        │                            duplicate entries, a redirect (refused: the token stays
        │                            with the catalog's host)
        ├── CatalogEntryNotFound     a grant for an entry the catalog no longer has (404)
        └── CatalogDigestMismatch    a grant for a digest that is not the entry's (409)

``ConfigError`` (invalid configuration, fatal at start) lives in ``controller.config``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar


class ControllerError(Exception):
    pass


class KubeError(ControllerError):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):  # noqa: N818 - named after the API server's reason
    pass


class Conflict(KubeError):  # noqa: N818
    pass


class Gone(KubeError):  # noqa: N818
    pass


@dataclass(frozen=True)
class Permission:
    """One RBAC rule the controller's service account lacks, as the API server names it."""

    verb: str
    resource: str
    """The plural, with its subresource when there is one (``models/status``)."""
    group: str
    """Empty for the core group."""
    namespace: str | None
    """``None`` when the request was cluster-scoped."""

    def __str__(self) -> str:
        group = f"API group {self.group}" if self.group else "the core API group"
        where = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.verb} {self.resource} ({group}) {where}"


# The authorizer's wording (k8s.io/apiserver endpoints/handlers/responsewriters):
# `... cannot patch resource "models/status" in API group "ai.deckhouse.io" in the namespace "a"`
# or `... at the cluster scope`.
_DENIED = re.compile(
    r'cannot (?P<verb>[a-z]+) resource "(?P<resource>[^"]*)" in API group "(?P<group>[^"]*)"'
    r'(?: in the namespace "(?P<namespace>[^"]*)")?'
)


class Forbidden(KubeError):  # noqa: N818
    @property
    def permission(self) -> Permission | None:
        """The rule RBAC refused, or ``None`` for a 403 of another cause (a namespace being
        terminated, an admission plugin)."""
        found = _DENIED.search(self.message)
        if found is None:
            return None
        verb, resource, group, namespace = found.group("verb", "resource", "group", "namespace")
        return Permission(verb, resource, group, namespace)


class ApiUnavailable(KubeError):  # noqa: N818
    pass


_BY_STATUS: dict[int, type[KubeError]] = {404: NotFound, 409: Conflict, 410: Gone, 403: Forbidden}


def kube_error(status: int, reason: str, message: str) -> KubeError:
    """The one table from an API server status to an error class."""
    if status in _BY_STATUS:
        return _BY_STATUS[status](status, reason, message)
    if status >= 500 or status in (0, 429):
        return ApiUnavailable(status, reason, message)
    return KubeError(status, reason, message)


class RegistryError(ControllerError):
    pass


class JobRenderFailed(ControllerError):  # noqa: N818 - the status reason
    reason: ClassVar[str] = "JobRenderFailed"


class PreparationBlocked(ControllerError):  # noqa: N818 - a condition, not a crash
    reason: ClassVar[str] = "PreparationBlocked"


class AuthSecretNotFound(PreparationBlocked):
    reason = "AuthSecretNotFound"


class AuthSecretInvalid(PreparationBlocked):
    reason = "AuthSecretInvalid"


class AuthSecretForbidden(PreparationBlocked):
    reason = "AuthSecretForbidden"


class CatalogError(ControllerError):
    """A catalog source failed; ``reason`` is the ModelCatalogSource's Ready reason. Messages
    never carry the token or the CA (they name the source, the URL and the status)."""

    reason: ClassVar[str] = "CatalogError"
    code: str = ""
    """The catalog's own error code (``ErrorBody.code``) when it sent one."""


class CatalogSourceInvalid(CatalogError):  # noqa: N818 - the condition reason
    reason = "CatalogSourceInvalid"


class InvalidCatalogURL(CatalogSourceInvalid):
    reason = "InvalidCatalogURL"


class InvalidRefreshInterval(CatalogSourceInvalid):
    reason = "InvalidRefreshInterval"


class CredentialsSecretNotFound(CatalogSourceInvalid):
    reason = "CredentialsSecretNotFound"


class CredentialsSecretInvalid(CatalogSourceInvalid):
    reason = "CredentialsSecretInvalid"


class CASecretInvalid(CatalogSourceInvalid):
    reason = "CASecretInvalid"


class CatalogUnreachable(CatalogError):  # noqa: N818 - the condition reason
    reason = "CatalogUnreachable"


class CatalogBusy(CatalogUnreachable):
    """429 or 503: the catalog asks to come back after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CatalogUnauthorized(CatalogError):  # noqa: N818 - the condition reason
    reason = "CatalogUnauthorized"


class CatalogTLSError(CatalogError):
    reason = "CatalogTLSError"


class CatalogMalformed(CatalogError):  # noqa: N818 - the condition reason
    reason = "CatalogMalformed"


class CatalogEntryNotFound(CatalogError):  # noqa: N818 - the condition reason
    reason = "CatalogEntryNotFound"


class CatalogDigestMismatch(CatalogError):  # noqa: N818 - the condition reason
    reason = "CatalogDigestMismatch"
