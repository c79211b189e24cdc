"""The controller's door to the OCI registry: deleting an artifact's manifest at finalization.

Small on purpose (the worker owns pushing and pulling): resolve a tag to its digest with a HEAD
(always with ``Accept``: the distribution registry answers 404 to a manifest request without
it), then ``DELETE`` by digest. Basic auth from a docker config JSON, or the registry's bearer
token flow; TLS with a custom CA; plain HTTP only when configured insecure.

Credentials go to a token realm only over HTTPS, unless the registry itself is plain HTTP (the
worker's rule, ``worker/oci/registry.py``): an HTTPS registry that names an ``http://`` realm
would otherwise make the controller send its password in clear text. A docker config that is
not what it should be is a ``ConfigError`` naming where it came from (never its content).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from controller.config import ConfigError
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
    password: str | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"


def _host_of(key: str) -> str:
    # Keys are written as "host", "https://host", "http://host/v1/" by the various tools.
    for prefix in ("https://", "http://"):
        key = key.removeprefix(prefix)
    return key.split("/", 1)[0]


def credentials_from_docker_config(
    config_json: bytes, host: str, origin: str = "docker config"
) -> tuple[str, str] | None:
    """``(username, password)`` for ``host`` from a docker config JSON; ``None`` when it has no
    entry for ``host``. ``ConfigError`` naming ``origin`` when the document is malformed."""

    def malformed(why: str) -> ConfigError:
        return ConfigError(f"{origin} is not a usable docker config JSON: {why}")

    try:
        document: Any = json.loads(config_json)
    except ValueError as error:  # UnicodeDecodeError included
        raise malformed(f"not JSON ({type(error).__name__})") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        raise malformed('no "auths" object')
    entry = next((e for k, e in auths.items() if _host_of(str(k)) == host), None)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise malformed(f"the entry for {host} is not an object")
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return username, password
    try:
        decoded = base64.b64decode(str(entry.get("auth", "")), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    user, colon, secret = decoded.partition(":")
    if not (colon and user):
        raise malformed(
            f"the entry for {host} has neither a base64 'auth' of user:password "
            "nor 'username' and 'password'"
        )
    return user, secret


class RegistryCleaner:
    def __init__(self, access: RegistryAccess, session: requests.Session | None = None) -> None:
        self._access = access
        self._session = session or requests.Session()
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
        realm = urlsplit(params["realm"])
        if auth[0] and realm.scheme != "https" and not self._access.insecure:
            raise RegistryError(
                f"registry {self._access.host} names the token realm "
                f"{realm.scheme}://{realm.netloc}, which is not HTTPS; refusing to send "
                "the registry credentials there"
            )
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
        if not isinstance(body, dict):
            return None
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
