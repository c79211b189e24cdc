"""The controller's door to the OCI registry: deleting an artifact's manifest at finalization.

Small on purpose (the worker owns pushing and pulling): resolve a tag to its digest with a HEAD
(always with ``Accept``: the distribution registry answers 404 to a manifest request without
it), then ``DELETE`` by digest. Basic auth from a docker config JSON, or the registry's bearer
token flow; TLS with a custom CA; plain HTTP only when configured insecure.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import requests

from controller.errors import RegistryError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
TIMEOUT = 15.0


@dataclass(frozen=True)
class RegistryAccess:
    host: str
    insecure: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def base(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"


def credentials_from_docker_config(config_json: bytes, host: str) -> tuple[str, str] | None:
    """``(username, password)`` for ``host`` from a docker config JSON, if present."""
    try:
        auths = json.loads(config_json).get("auths", {})
    except (ValueError, AttributeError):
        return None
    entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
    if not isinstance(entry, dict):
        return None
    if entry.get("username") and entry.get("password"):
        return str(entry["username"]), str(entry["password"])
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return user, password
    return None


class RegistryCleaner:
    def __init__(self, access: RegistryAccess) -> None:
        self._access = access
        self._session = requests.Session()
        self._session.trust_env = False  # REQUESTS_CA_BUNDLE would override the CA silently
        self._token: str | None = None

    def _verify(self) -> bool | str:
        return self._access.ca_file or True

    def _bearer(self, challenge: str, scope: str) -> str | None:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in params:
            return None
        query = {"service": params.get("service", ""), "scope": scope}
        auth = (self._access.username or "", self._access.password or "")
        response = self._session.get(
            params["realm"],
            params=query,
            auth=auth if auth[0] else None,
            timeout=TIMEOUT,
            verify=self._verify(),
        )
        if response.status_code != 200:
            return None
        body = response.json()
        token = body.get("token") or body.get("access_token")
        return str(token) if token else None

    def _request(self, method: str, repository: str, reference: str) -> requests.Response:
        url = f"{self._access.base}/v2/{repository}/manifests/{reference}"
        headers = {"Accept": MANIFEST_TYPES}
        auth = None
        if self._access.username:
            auth = (self._access.username, self._access.password or "")
        try:
            response = self._session.request(
                method, url, headers=headers, auth=auth, timeout=TIMEOUT, verify=self._verify()
            )
            challenge = response.headers.get("WWW-Authenticate", "")
            if response.status_code == 401 and challenge.lower().startswith("bearer"):
                token = self._bearer(challenge, f"repository:{repository}:pull,delete")
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                    response = self._session.request(
                        method, url, headers=headers, timeout=TIMEOUT, verify=self._verify()
                    )
        except requests.RequestException as error:
            raise RegistryError(
                f"registry {self._access.host} unreachable: {type(error).__name__}"
            ) from error
        return response

    def resolve(self, repository: str, tag: str) -> str | None:
        """The digest a tag points to, or ``None`` when there is no such manifest."""
        response = self._request("HEAD", repository, tag)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(
                f"registry {self._access.host} answered {response.status_code} "
                f"to HEAD {repository}:{tag}"
            )
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(
                f"registry {self._access.host} did not report the digest of {repository}:{tag}"
            )
        return digest

    def delete(self, repository: str, digest: str) -> bool:
        """Deletes a manifest by digest; ``False`` when it was already gone."""
        response = self._request("DELETE", repository, digest)
        if response.status_code in (200, 202):
            return True
        if response.status_code == 404:
            return False
        raise RegistryError(
            f"registry {self._access.host} answered {response.status_code} "
            f"to DELETE {repository}@{digest}"
        )
