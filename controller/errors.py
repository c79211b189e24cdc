"""The controller's errors.

    ControllerError
    ├── KubeError                    an API server answer that is not success
    │   ├── NotFound                 404: for a reconcile, the object is gone — success
    │   ├── Conflict                 409: stale resourceVersion or already exists — requeue now
    │   ├── Gone                     410: a watch's resourceVersion expired — relist
    │   ├── Forbidden                403: RBAC refuses; a packaging bug, logged loudly
    │   └── ApiUnavailable           5xx, timeouts, connection errors — retried with backoff
    ├── RegistryError                the OCI registry refused or could not be reached
    ├── JobRenderFailed              the attempt's Job could not be built, or the API server
    │                                rejected it as invalid: terminal for this attempt (reason)
    └── PreparationBlocked           the object cannot get a Job yet for a reason the user can
                                     fix (reason is the Ready condition's reason)
        ├── AuthSecretNotFound       authSecretRef names a Secret that does not exist
        ├── AuthSecretInvalid        the Secret has no non-empty ``token`` key
        └── AuthSecretForbidden      the controller may not read it (its namespace is not in
                                     the chart's controller.authSecretNamespaces)

``ConfigError`` (invalid configuration, fatal at start) lives in ``controller.config``.
"""

from __future__ import annotations

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


class Forbidden(KubeError):  # noqa: N818
    pass


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
