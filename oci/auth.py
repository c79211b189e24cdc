"""Registry credentials and the answers to a registry's ``WWW-Authenticate`` challenge.

Credentials come from a docker config JSON document (``{"auths": {"<host>": {"auth": base64(user:
password)}}}`` or ``username``/``password`` keys): a file found at an explicit path, else at
``$REGISTRY_AUTH_FILE``, else at ``$DOCKER_CONFIG/config.json``, or the bytes of a Secret (the
controller). Nothing else is searched (no ``~/.docker``, no credential helpers): a pod gets
exactly the file it is given, and a test never picks up its machine's logins by accident. A
document that is not one is ``CredentialsInvalid`` naming where it came from and the host.

Challenges: ``Basic`` sends the credentials on every request; ``Bearer realm=…,service=…,scope=…``
exchanges them (or nothing, for anonymous pulls) for a token at the realm, cached per scope.
A ``BearerTokenFile`` (the delivery endpoint: a projected ServiceAccount token) is sent as
``Authorization: Bearer`` on every request instead, re-read from its file each time (the kubelet
rotates it in place). Secrets never appear in a repr, a message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from oci.errors import CredentialsInvalid, Unauthorized

AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
DOCKER_CONFIG_ENV = "DOCKER_CONFIG"

_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


MAX_TOKEN_FILE_BYTES = 16 << 10
"""A ServiceAccount JWT is about 1 KiB; a larger file is not a token."""


@dataclass(frozen=True)
class BearerTokenFile:
    """A static bearer token kept in a file (never in argv, a repr or a message)."""

    path: Path

    def header(self) -> str:
        try:
            with self.path.open("rb") as file:
                raw = file.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as error:
            raise CredentialsInvalid(
                f"token file {self.path} cannot be read ({error.strerror or type(error).__name__})"
            ) from None
        token = raw.strip()
        if not token or len(raw) > MAX_TOKEN_FILE_BYTES or not _TOKEN.fullmatch(token):
            raise CredentialsInvalid(
                f"token file {self.path} does not hold a bearer token (empty, larger than "
                f"{MAX_TOKEN_FILE_BYTES:,} bytes, or characters a token cannot have)"
            )
        return "Bearer " + token.decode("ascii")


_TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lower-case: ``basic`` or ``bearer`` (others are not supported)."""
    params: Mapping[str, str]


def find_auth_file(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The docker config file to read, or None when none is configured."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if env.get(AUTH_FILE_ENV):
        return Path(env[AUTH_FILE_ENV])
    if env.get(DOCKER_CONFIG_ENV):
        candidate = Path(env[DOCKER_CONFIG_ENV]) / "config.json"
        return candidate if candidate.is_file() else None
    return None


def load_credentials(host: str, auth_file: Path | None) -> Credentials | None:
    """The credentials for ``host`` in ``auth_file`` (None when the file has no entry for it)."""
    if auth_file is None:
        return None
    try:
        data = auth_file.read_bytes()
    except OSError as error:
        raise CredentialsInvalid(
            f"registry auth file {auth_file} cannot be read "
            f"({error.strerror or type(error).__name__})"
        ) from None
    return docker_config_credentials(data, host, f"registry auth file {auth_file}")


def docker_config_credentials(data: bytes, host: str, origin: str) -> Credentials | None:
    """The credentials for ``host`` in a docker config JSON document; None when it has no entry
    for ``host``. ``CredentialsInvalid`` naming ``origin`` (and the host) when the document is
    not one, never quoting it: it holds secrets."""

    def malformed(why: str) -> CredentialsInvalid:
        return CredentialsInvalid(f"{origin} is not a usable docker config JSON: {why}")

    try:
        document: object = json.loads(data)
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
        return Credentials(username, password)
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
    return Credentials(user, secret)


def _host_of(key: str) -> str:
    # Keys are written as "host", "https://host", "http://host/v1/" by the various tools.
    for prefix in ("https://", "http://"):
        key = key.removeprefix(prefix)
    return key.split("/", 1)[0]


def parse_challenge(header: str) -> Challenge | None:
    """The first Basic or Bearer challenge of a ``WWW-Authenticate`` header."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("basic", "bearer"):
        return None
    params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def token_in_answer(body: bytes, realm_host: str) -> str:
    """The token of a token realm's JSON answer (``token``, or OAuth2's ``access_token``)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    token = None
    if isinstance(document, dict):
        token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not token:
        raise Unauthorized(f"token realm {realm_host} returned no token")
    return token


TokenFetcher = Callable[[str, Mapping[str, object], Credentials | None], str]
"""``(realm, query params, credentials) -> token``: the registry client's GET of the realm."""


class Authenticator:
    """Which ``Authorization`` header to send; learns the scheme from the first challenge."""

    def __init__(
        self,
        credentials: Credentials | None,
        fetch_token: TokenFetcher,
        token_file: BearerTokenFile | None = None,
    ) -> None:
        self._credentials = credentials
        self._fetch_token = fetch_token
        self._token_file = token_file
        self._basic = False
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def has_credentials(self) -> bool:
        return self._credentials is not None or self._token_file is not None

    def header(self, scope: str) -> dict[str, str]:
        """The header for a request that needs ``scope`` (space-separated repository scopes)."""
        if self._token_file is not None:
            return {"Authorization": self._token_file.header()}
        with self._lock:
            token = self._tokens.get(scope)
        if token is not None:
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self._credentials is not None:
            return {"Authorization": self._credentials.basic_header()}
        return {}

    def answer(self, challenge: Challenge, scope: str) -> bool:
        """Prepares a new header after a 401; False when a retry cannot change the answer."""
        if self._token_file is not None:
            return False  # the token is all we have; a rotated one is read on the next request
        if challenge.scheme == "basic":
            if self._basic or self._credentials is None:
                return False
            self._basic = True
            return True
        realm = challenge.params.get("realm")
        if not realm:
            return False
        scopes = sorted(set(scope.split()) | set(challenge.params.get("scope", "").split()))
        query: dict[str, object] = {"scope": scopes}
        if challenge.params.get("service"):
            query["service"] = challenge.params["service"]
        token = self._fetch_token(realm, query, self._credentials)
        with self._lock:
            self._tokens[scope] = token
        return True
