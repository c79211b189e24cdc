"""The worker's only HTTP client of OCI registries (distribution spec v2), over ``requests``.

Every request goes through ``RegistryClient._send``, which adds authentication (see ``auth``),
retries connection errors, 5xx and 429 with exponential backoff (honouring ``Retry-After``) up to
``RegistrySettings.attempts``, and ends with ``RegistryUnavailable`` ("registry 503 after 6
attempts: …"). ``raise_for_registry_status`` is the one table from a response to a typed error,
preferring the registry's own ``errors[].code`` over the bare status.

TLS: the session ignores the environment (``trust_env=False``: ``REQUESTS_CA_BUNDLE`` would
silently replace our CA) and passes ``verify=`` on each request. Plain HTTP is used only when the
caller says so (``insecure`` or an ``http://`` reference) — never as a fallback.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from worker.errors import RegistryRejected, RegistryUnauthorized, RegistryUnavailable
from worker.oci.auth import Authenticator, BearerTokenFile, Credentials, parse_challenge
from worker.oci.content import sha256_digest

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_MANIFEST_BYTES = 4 << 20
"""Manifests are small JSON documents; the distribution registry itself refuses more than 4 MiB."""
_MAX_ERROR_BODY = 64 << 10
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class RegistrySettings:
    attempts: int = 6
    """Tries per request (the first included) before ``RegistryUnavailable``."""
    backoff_initial: float = 0.5
    """Seconds before the second try; doubled before each further one."""
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    """A larger ``Retry-After`` is cut to this (a registry cannot park the worker for hours)."""
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    """Seconds without a byte; a registry may take long to verify a large blob on the final PUT."""
    chunk_size: int = 8 << 20
    """Bytes per upload PATCH and per read of a blob download (memory per transfer)."""
    bearer_token_file: Path | None = None
    """A static bearer token (re-read per request) instead of docker-config credentials: the
    delivery endpoint's projected ServiceAccount token."""

    def backoff(self, attempt: int) -> float:
        """The pause after failed try number ``attempt`` (1-based)."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1)))


class RegistryRefusal(RegistryRejected):
    """A 4xx other than auth; keeps the status and the registry's error codes for callers."""

    def __init__(self, message: str, status: int, codes: frozenset[str]) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes


class RegistryAuthRefusal(RegistryUnauthorized):
    """401/403 (or an UNAUTHORIZED/DENIED code); keeps the status and the server's own message
    (``errors[].message``) for callers that name the refusal themselves (``materialize-pod``)."""

    def __init__(self, message: str, status: int, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str


def _error_detail(response: requests.Response) -> tuple[frozenset[str], str]:
    codes, detail, _ = _error_document(response)
    return codes, detail


def _error_document(response: requests.Response) -> tuple[frozenset[str], str, str]:
    """The ``errors[]`` codes, ``code: message`` pairs and the bare messages (bounded)."""
    try:
        body = next(response.iter_content(_MAX_ERROR_BODY), b"")
    except (requests.RequestException, StopIteration):
        body = b""
    try:
        errors = json.loads(body).get("errors") or []
        codes = [str(e.get("code", "")) for e in errors if isinstance(e, dict)]
        texts = [
            f"{e.get('code', '')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)
        ]
        messages = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
        return frozenset(codes), "; ".join(texts)[:500], "; ".join(messages)[:1000]
    except (ValueError, AttributeError):
        return frozenset(), "", ""


def raise_for_registry_status(response: requests.Response, what: str) -> None:
    """Raises the typed error for a non-2xx response to the request described by ``what``."""
    if response.ok:
        return
    codes, detail, server_message = _error_document(response)
    status = response.status_code
    message = f"{what}: registry answered {status}" + (f" ({detail})" if detail else "")
    if status in (401, 403) or codes & {"UNAUTHORIZED", "DENIED"}:
        raise RegistryAuthRefusal(
            f"{message}; check the registry credentials (the docker config 'auths' entry for "
            "this host) and that they may push and pull this repository",
            status,
            server_message,
        )
    if status in RETRYABLE_STATUSES:
        raise RegistryUnavailable(message)
    raise RegistryRefusal(message, status, codes)


def _retry_after(response: requests.Response, cap: float) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(cap, seconds))


class RegistryClient:
    """One registry host. Thread-safe: uploads of several files share it."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        ca_file: Path | None = None,
        credentials: Credentials | None = None,
        settings: RegistrySettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: requests.adapters.BaseAdapter | None = None,
    ) -> None:
        """``transport`` replaces the network (tests pass an in-memory adapter)."""
        self.host = host
        self.base_url = f"{'http' if insecure else 'https'}://{host}"
        self.settings = settings or RegistrySettings()
        self._sleep = sleep
        self._verify: bool | str = str(ca_file) if ca_file is not None else True
        self._session = requests.Session()
        self._session.trust_env = False
        adapter = transport or requests.adapters.HTTPAdapter(pool_maxsize=16, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        token_file = self.settings.bearer_token_file
        self._auth = Authenticator(
            credentials, self._fetch_token, BearerTokenFile(token_file) if token_file else None
        )

    def close(self) -> None:
        self._session.close()

    def pause(self, seconds: float) -> None:
        """Sleeps with the injected sleep function (tests pass a fake one)."""
        self._sleep(seconds)

    # ---- the one request path -------------------------------------------------------------

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path)

    def _send(
        self, method: str, url: str, *, scope: str, authenticate: bool = True, **kwargs: Any
    ) -> requests.Response:
        """Sends with auth and retries; returns the response whatever its final status."""
        extra_headers: dict[str, str] = kwargs.pop("headers", {})
        attempt, answered = 0, not authenticate
        what = f"{method} {urlsplit(url).path}"
        while True:
            attempt += 1
            headers = self._headers(url, scope, extra_headers) if authenticate else extra_headers
            try:
                response = self._session.request(
                    method, url, headers=headers, verify=self._verify, timeout=self._timeouts(),
                    **kwargs,
                )  # fmt: skip
            except requests.exceptions.SSLError as error:
                # A certificate that does not verify will not verify on the next try either.
                raise RegistryRejected(
                    f"TLS verification of {self.host} failed ({type(error).__name__}); give "
                    "the registry's CA certificate (ca_file) or fix the registry's certificate"
                ) from error
            except _NETWORK_ERRORS as error:
                self._pause_or_fail(attempt, what, type(error).__name__, None, error)
                continue
            if response.status_code == 401 and not answered:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
                if challenge is not None and self._auth.answer(challenge, scope):
                    answered, attempt = True, attempt - 1  # an auth round is not a failure
                    response.close()
                    continue
            if response.status_code in RETRYABLE_STATUSES:
                self._pause_or_fail(attempt, what, str(response.status_code), response, None)
                continue
            return response

    def _headers(self, url: str, scope: str, extra: Mapping[str, str]) -> dict[str, str]:
        headers = dict(extra)
        # Credentials go to the registry host only, never to a redirect or upload elsewhere.
        if urlsplit(url).netloc == urlsplit(self.base_url).netloc:
            headers.update(self._auth.header(scope))
        return headers

    def _timeouts(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.read_timeout)

    def _pause_or_fail(
        self,
        attempt: int,
        what: str,
        failure: str,
        response: requests.Response | None,
        error: Exception | None,
    ) -> None:
        settings = self.settings
        if attempt >= settings.attempts:
            detail = ""
            if response is not None:
                detail = _error_detail(response)[1]
            message = f"registry {failure} after {attempt} attempts: {what} at {self.host}"
            raise RegistryUnavailable(message + (f" ({detail})" if detail else "")) from error
        delay = None
        if response is not None:
            delay = _retry_after(response, settings.retry_after_max)
            response.close()
        self._sleep(settings.backoff(attempt) if delay is None else delay)

    def _fetch_token(
        self, realm: str, query: Mapping[str, object], credentials: Credentials | None
    ) -> str:
        if urlsplit(realm).scheme != "https" and credentials and self.base_url.startswith("https"):
            raise RegistryUnauthorized(
                f"token realm {realm} is not HTTPS; refusing to send secrets"
            )
        headers = {"Authorization": credentials.basic_header()} if credentials else {}
        response = self._send(
            "GET", realm, scope="", authenticate=False, params=query, headers=headers
        )
        raise_for_registry_status(response, f"token request to {urlsplit(realm).netloc}")
        document = response.json()
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryUnauthorized(f"token realm {urlsplit(realm).netloc} returned no token")
        return token

    # ---- blobs ----------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The blob's size when the repository has it (HEAD), else None."""
        url = self.url(f"/v2/{repository}/blobs/{digest}")
        response = self._send("HEAD", url, scope=_pull(repository), allow_redirects=True)
        if response.status_code == 404:
            return None
        raise_for_registry_status(response, f"HEAD blob {digest} in {repository}")
        return int(response.headers.get("Content-Length", "0"))

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Cross-repository mount; False when the registry could not mount (nothing copied)."""
        url = self.url(f"/v2/{repository}/blobs/uploads/")
        scope = f"{_push(repository)} {_pull(source_repository)}"
        params = {"mount": digest, "from": source_repository}
        response = self._send("POST", url, scope=scope, params=params)
        if response.status_code == 201:
            return True
        raise_for_registry_status(response, f"mount {digest} into {repository}")
        # 202: the registry opened an ordinary upload instead; we have no use for it.
        if response.headers.get("Location"):
            self.cancel_upload(repository, urljoin(response.url, response.headers["Location"]))
        return False

    def start_upload(self, repository: str) -> str:
        """Opens an upload session; returns its absolute location URL."""
        response = self._send(
            "POST", self.url(f"/v2/{repository}/blobs/uploads/"), scope=_push(repository)
        )
        raise_for_registry_status(response, f"start upload to {repository}")
        return _location(response)

    def upload_offset(self, repository: str, location: str) -> int | None:
        """Bytes the registry holds for an upload session; None when the session is gone."""
        response = self._send("GET", location, scope=_push(repository))
        if response.status_code in (404, 400):
            return None
        raise_for_registry_status(response, f"upload status in {repository}")
        # Range: "0-<last byte>"; an empty session reports "0-0" or "0--1" depending on version.
        last = response.headers.get("Range", "0--1").partition("-")[2]
        return max(0, int(last) + 1) if last.lstrip("-").isdigit() else 0

    def upload_chunk(self, repository: str, location: str, data: bytes, offset: int) -> str:
        """PATCHes ``data`` at ``offset``; returns the session's next location."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(data) - 1}",
            "Content-Length": str(len(data)),
        }
        response = self._send(
            "PATCH", location, scope=_push(repository), data=data, headers=headers
        )
        raise_for_registry_status(response, f"upload chunk at {offset} to {repository}")
        return _location(response)

    def finish_upload(self, repository: str, location: str, digest: str) -> None:
        response = self._send(
            "PUT", location, scope=_push(repository), params={"digest": digest}, data=b"",
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        raise_for_registry_status(response, f"finish upload of {digest} to {repository}")

    def cancel_upload(self, repository: str, location: str) -> None:
        response = self._send("DELETE", location, scope=_push(repository))
        if response.status_code not in (404, 400):
            raise_for_registry_status(response, f"cancel upload in {repository}")

    def blob_chunks(self, repository: str, digest: str, offset: int = 0) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` (ranged GET), in chunks of at most ``chunk_size``."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        url = self.url(f"/v2/{repository}/blobs/{digest}")
        response = self._send("GET", url, scope=_pull(repository), headers=headers, stream=True)
        with response:
            raise_for_registry_status(response, f"GET blob {digest} from {repository}")
            skip = offset if response.status_code == 200 else 0  # the range was ignored
            try:
                for piece in response.iter_content(self.settings.chunk_size):
                    if skip:
                        piece, skip = piece[skip:], max(0, skip - len(piece))
                    if piece:
                        yield piece
            except _NETWORK_ERRORS as error:
                raise RegistryUnavailable(
                    f"registry connection lost while reading blob {digest} from {repository}: "
                    f"{type(error).__name__}"
                ) from error

    # ---- manifests ------------------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        url = self.url(f"/v2/{repository}/manifests/{reference}")
        headers = {"Content-Type": media_type}
        response = self._send("PUT", url, scope=_push(repository), data=data, headers=headers)
        raise_for_registry_status(response, f"PUT manifest {reference} in {repository}")
        return sha256_digest(data)

    def get_manifest(self, repository: str, reference: str, accept: tuple[str, ...]) -> Manifest:
        """The manifest (always with ``Accept``: the registry 404s an OCI manifest without it)."""
        url = self.url(f"/v2/{repository}/manifests/{reference}")
        headers = {"Accept": ", ".join(accept)}
        response = self._send("GET", url, scope=_pull(repository), headers=headers, stream=True)
        with response:
            raise_for_registry_status(response, f"GET manifest {reference} from {repository}")
            data = response.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryRejected(f"manifest {reference} in {repository} is larger than 4 MiB")
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryRejected(
                f"manifest {reference} from {repository} hashes to {digest}: the registry "
                "returned other bytes than the digest names"
            )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(data, media_type, digest)

    def head_manifest(self, repository: str, reference: str, accept: tuple[str, ...]) -> str | None:
        """The manifest's digest when it exists, else None."""
        url = self.url(f"/v2/{repository}/manifests/{reference}")
        headers = {"Accept": ", ".join(accept)}
        response = self._send("HEAD", url, scope=_pull(repository), headers=headers)
        if response.status_code == 404:
            return None
        raise_for_registry_status(response, f"HEAD manifest {reference} in {repository}")
        return response.headers.get("Docker-Content-Digest") or None

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Deletes by digest; False when it was already gone."""
        url = self.url(f"/v2/{repository}/manifests/{digest}")
        response = self._send("DELETE", url, scope=f"repository:{repository}:delete")
        if response.status_code == 404:
            return False
        raise_for_registry_status(response, f"DELETE manifest {digest} in {repository}")
        return True


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _location(response: requests.Response) -> str:
    location = response.headers.get("Location")
    if not location:
        raise RegistryRejected(f"{response.request.method} {response.url}: no Location header")
    return urljoin(response.url, location)
