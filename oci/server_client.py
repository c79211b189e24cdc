"""The registry client of a server that reads the cluster's registry (the delivery endpoint, the
catalog server): its credentials come only from the docker config file mounted into its pod,
never from the environment's ``DOCKER_CONFIG``, and a request is tried three times."""

from __future__ import annotations

from pathlib import Path

from oci.auth import find_auth_file, load_credentials
from oci.registry import RegistryClient, RegistrySettings

ATTEMPTS = 3


def server_registry_client(
    host: str, *, insecure: bool, ca_file: Path | None, auth_file: Path | None
) -> RegistryClient:
    """``CredentialsInvalid`` (an ``OciError``) when ``auth_file`` is unreadable or malformed."""
    credentials = load_credentials(host, find_auth_file(auth_file, {}))
    return RegistryClient(
        host,
        insecure=insecure,
        ca_file=ca_file,
        credentials=credentials,
        settings=RegistrySettings(attempts=ATTEMPTS),
    )
