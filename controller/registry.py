"""The controller's door to the OCI registry: deleting an artifact's manifest at finalization, and
an upload session's staging blob when the session ends (docs/upload.md).

A thin facade over the shared registry client (``oci.registry``; the worker owns pushing and
pulling): resolve a tag to its digest with a HEAD, then ``DELETE`` by digest. Its errors become
``RegistryError`` here; a docker config that is not one (the registry auth Secret) is a
``ConfigError`` at startup naming the Secret, its key and the registry host, never the content.
The client sends credentials to a token realm only over HTTPS, unless the registry itself is
plain HTTP (docs/security.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from requests.adapters import BaseAdapter

from controller.config import ConfigError
from controller.errors import RegistryError
from oci.auth import Credentials, docker_config_credentials
from oci.errors import CredentialsInvalid, OciError
from oci.registry import RegistryClient, RegistrySettings

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
TIMEOUT = 15.0
# One try per call: a reconcile is not held in a retry loop, the finalizer requeues with backoff.
SETTINGS = RegistrySettings(attempts=1, connect_timeout=TIMEOUT, read_timeout=TIMEOUT)


@dataclass(frozen=True)
class RegistryAccess:
    host: str
    insecure: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def credentials_from_docker_config(
    config_json: bytes, host: str, origin: str = "docker config"
) -> tuple[str, str] | None:
    """``(username, password)`` for ``host`` from a docker config JSON; ``None`` when it has no
    entry for ``host``. ``ConfigError`` naming ``origin`` when the document is malformed."""
    try:
        found = docker_config_credentials(config_json, host, origin)
    except CredentialsInvalid as error:
        raise ConfigError(error.message) from None
    return (found.username, found.password) if found else None


@contextlib.contextmanager
def _registry_errors() -> Iterator[None]:
    try:
        yield
    except OciError as error:
        raise RegistryError(error.message) from error


class RegistryCleaner:
    def __init__(self, access: RegistryAccess, transport: BaseAdapter | None = None) -> None:
        """``transport`` replaces the network (tests pass an in-memory adapter)."""
        self._access = access
        credentials = None
        if access.username:
            credentials = Credentials(access.username, access.password or "")
        self._client = RegistryClient(
            access.host,
            insecure=access.insecure,
            ca_file=Path(access.ca_file) if access.ca_file else None,
            credentials=credentials,
            settings=SETTINGS,
            transport=transport,
        )

    def resolve(self, repository: str, tag: str) -> str | None:
        """The digest a tag points to, or ``None`` when there is no such manifest."""
        with _registry_errors():
            return self._client.head_manifest(repository, tag, MANIFEST_TYPES)

    def delete(self, repository: str, digest: str) -> bool:
        """Deletes a manifest by digest; ``False`` when it was already gone."""
        with _registry_errors():
            return self._client.delete_manifest(repository, digest)

    def delete_blob(self, repository: str, digest: str) -> bool:
        """Unlinks a blob from a repository (the upload's staging repository); ``False`` when it
        was not there."""
        with _registry_errors():
            return self._client.delete_blob(repository, digest)
