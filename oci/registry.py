"""The one HTTP client of OCI registries (distribution spec v2), over ``requests``.

The worker pushes and pulls with it, the delivery endpoint reads through it, the Ollama source
reads its models with it (the Ollama registry speaks the same API) and the controller deletes
manifests with it. Every request goes through ``RegistryClient._send``, which adds
authentication (see ``auth``), retries connection errors, 5xx and 429 with exponential backoff
(honouring ``Retry-After``) up to ``RegistrySettings.attempts``, and ends with ``Unavailable``
("registry 503 after 6 attempts: …"). ``status.raise_for_registry_status`` is the one table from
a response to a typed error (``errors``).

Credentials go to a token realm only over HTTPS, unless the registry itself is plain HTTP: an
HTTPS registry that names an ``http://`` realm would otherwise receive the password in clear.

TLS: the session ignores the environment (``trust_env=False``: ``REQUESTS_CA_BUNDLE`` would
silently replace our CA) and passes ``verify=`` on each request. Plain HTTP is used only when the
caller says so (``insecure`` or an ``http://`` base URL) — never as a fallback. Blobs stream in
chunks of ``chunk_size``; nothing reads a blob whole unless the caller bounds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from oci.auth import (
    Authenticator,
    BearerTokenFile,
    Credentials,
    parse_challenge,
    token_in_answer,
)
from oci.digest import is_digest, sha256_digest
from oci.errors import BadResponse, TlsFailure, Unauthorized, Unavailable
from oci.manifest import MAX_MANIFEST_BYTES, Manifest, parse_bounded_json
from oci.responses import (
    NETWORK_ERRORS,
    RETRYABLE_STATUSES,
    error_document,
    raise_for_registry_status,
    range_start,
    read_at_most,
    retry_after,
)
from oci.settings import RegistrySettings

_MAX_TOKEN_ANSWER = 64 << 10
__all__ = ["RegistryClient", "RegistrySettings"]


class RegistryClient:
    """One registry host. Thread-safe: uploads of several files share it."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        ca_file: Path | None = None,
        verify_tls: bool = True,
        credentials: Credentials | None = None,
        settings: RegistrySettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: requests.adapters.BaseAdapter | None = None,
        path_prefix: str = "",
    ) -> None:
        """``insecure``: plain HTTP; ``verify_tls=False``: HTTPS without verifying the
        certificate (development only); ``path_prefix``: where the API sits below the host
        (``/v2/`` is appended to it); ``transport`` replaces the network (tests pass an
        in-memory adapter)."""
        self.host = host
        self.base_url = f"{'http' if insecure else 'https'}://{host}{path_prefix.rstrip('/')}"
        self.settings = settings or RegistrySettings()
        self._sleep = sleep
        self._verify: bool | str = str(ca_file) if ca_file is not None else True
        if not verify_tls:
            self._verify = False
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers["User-Agent"] = "ai-models"
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
        """The URL of an API ``path`` (``/v2/…``), below the base URL's path prefix."""
        return self.base_url + path

    def _send(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        authenticate: bool = True,
        once: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """Sends with auth and retries; returns the response whatever its final status.

        ``once``: the body is a stream that cannot be sent again, so nothing is retried: a lost
        connection or a renewed token raises ``Unavailable`` (the caller resumes from what the
        registry holds), a 5xx or 429 is returned as it is."""
        extra_headers: dict[str, str] = kwargs.pop("headers", {})
        attempt, answered = 0, not authenticate
        what = f"{method} {urlsplit(url).path}"
        while True:
            attempt += 1
            headers = self._headers(url, scope, extra_headers) if authenticate else extra_headers
            try:
                response = self._session.request(
                    method, url, headers=headers, verify=self._verify, timeout=self._timeouts(),
                    proxies=self._proxies(url), **kwargs,
                )  # fmt: skip
            except requests.exceptions.SSLError as error:
                # A certificate that does not verify will not verify on the next try either.
                raise TlsFailure(
                    f"TLS verification of {self.host} failed ({type(error).__name__}); give "
                    "the registry's CA certificate (ca_file) or fix the registry's certificate"
                ) from error
            except NETWORK_ERRORS as error:
                if once:
                    raise Unavailable(
                        f"registry connection lost: {what} at {self.host} ({type(error).__name__})"
                    ) from error
                self._pause_or_fail(attempt, what, type(error).__name__, None, error)
                continue
            if response.status_code == 401 and not answered:
                challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
                if challenge is not None and self._auth.answer(challenge, scope):
                    answered, attempt = True, attempt - 1  # an auth round is not a failure
                    response.close()
                    if once:
                        raise Unavailable(f"registry renewed the token during {what}", 401)
                    continue
            if response.status_code in RETRYABLE_STATUSES and not once:
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

    def _proxies(self, url: str) -> dict[str, str]:
        if not self.settings.environment_proxies:
            return {}
        return dict(requests.utils.get_environ_proxies(url))

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
            detail = error_document(response)[1] if response is not None else ""
            message = f"registry {failure} after {attempt} attempts: {what} at {self.host}"
            status = response.status_code if response is not None else None
            raise Unavailable(message + (f" ({detail})" if detail else ""), status) from error
        delay = None
        if response is not None:
            delay = retry_after(response, settings.retry_after_max)
            response.close()
        self._sleep(settings.backoff(attempt) if delay is None else delay)

    def _fetch_token(
        self, realm: str, query: Mapping[str, object], credentials: Credentials | None
    ) -> str:
        parts = urlsplit(realm)
        if parts.scheme != "https" and credentials and self.base_url.startswith("https"):
            raise Unauthorized(
                f"registry {self.host} names the token realm {parts.scheme}://{parts.netloc}, "
                "which is not HTTPS; refusing to send the registry credentials there"
            )
        headers = {"Authorization": credentials.basic_header()} if credentials else {}
        response = self._send(
            "GET", realm, scope="", authenticate=False, params=query, headers=headers,
            stream=True,
        )  # fmt: skip
        with response:
            raise_for_registry_status(response, f"token request to {parts.netloc}")
            body = read_at_most(response, _MAX_TOKEN_ANSWER, f"token from {parts.netloc}")
        return token_in_answer(body, parts.netloc)

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

    def upload_stream(
        self, repository: str, location: str, pieces: Iterable[bytes | memoryview]
    ) -> str:
        """Appends ``pieces`` to the session in one PATCH whose body streams as they come
        (``Transfer-Encoding: chunked``, the streamed upload docker clients use); returns the
        session's next location. The sender may end the body early, at any piece: the registry
        keeps what it got and the session stays valid. Tried once (a stream cannot be
        replayed): a lost connection raises ``Unavailable`` and the caller resumes from the
        session's offset (``upload_offset``)."""
        response = self._send(
            "PATCH", location, scope=_push(repository), data=iter(pieces),
            headers={"Content-Type": "application/octet-stream"}, once=True,
        )  # fmt: skip
        raise_for_registry_status(response, f"streamed upload to {repository}")
        return _location(response)

    def finish_upload(self, repository: str, location: str, digest: str, data: bytes = b"") -> None:
        """Closes the session with ``digest``; ``data``: the blob's last (or only) bytes, sent
        in this PUT (a small blob needs no PATCH)."""
        response = self._send(
            "PUT", location, scope=_push(repository), params={"digest": digest}, data=data,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        raise_for_registry_status(response, f"finish upload of {digest} to {repository}")

    def cancel_upload(self, repository: str, location: str) -> None:
        response = self._send("DELETE", location, scope=_push(repository))
        if response.status_code not in (404, 400):
            raise_for_registry_status(response, f"cancel upload in {repository}")

    def blob_chunks(
        self, repository: str, digest: str, offset: int = 0, chunk_size: int | None = None
    ) -> Iterator[bytes]:
        """The blob's bytes from ``offset`` (ranged GET), in chunks of at most ``chunk_size``
        (default: the settings'). Nothing more than one chunk is ever held."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._get_blob(repository, digest, headers)
        with response:
            raise_for_registry_status(response, f"GET blob {digest} from {repository}")
            skip = offset if response.status_code == 200 else 0  # the range was ignored
            try:
                for piece in response.iter_content(chunk_size or self.settings.chunk_size):
                    if skip:
                        piece, skip = piece[skip:], max(0, skip - len(piece))
                    if piece:
                        yield piece
            except NETWORK_ERRORS as error:
                raise Unavailable(
                    f"registry connection lost while reading blob {digest} from {repository}: "
                    f"{type(error).__name__}"
                ) from error

    def blob_range(self, repository: str, digest: str, offset: int, length: int) -> bytes:
        """``length`` bytes of the blob at ``offset`` with one ranged GET (``length`` > 0); a
        registry that ignores the range is refused rather than read whole."""
        what = f"blob {digest} in {repository}"
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        response = self._get_blob(repository, digest, headers)
        with response:
            raise_for_registry_status(response, f"GET range of {what}")
            if response.status_code != 206:
                raise BadResponse(f"{what}: the registry ignored the Range header")
            if range_start(response.headers.get("Content-Range", "")) != offset:
                raise BadResponse(f"{what}: the registry answered a range other than requested")
            return read_at_most(response, length, what)

    def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        """A small blob whole (a config), refusing more than ``limit`` bytes; verified."""
        what = f"blob {digest} in {repository}"
        response = self._get_blob(repository, digest, {})
        with response:
            raise_for_registry_status(response, f"GET {what}")
            data = read_at_most(response, limit + 1, what)
        if len(data) > limit:
            raise BadResponse(f"{what} is larger than {limit:,} bytes")
        if sha256_digest(data) != digest:
            raise BadResponse(f"{what}: the registry returned other bytes than the digest names")
        return data

    def _get_blob(self, repository: str, digest: str, headers: dict[str, str]) -> requests.Response:
        if not is_digest(digest):
            raise BadResponse(f"{repository}: {digest[:80]!r} is not a sha256 digest")
        url = self.url(f"/v2/{repository}/blobs/{digest}")
        return self._send("GET", url, scope=_pull(repository), headers=headers, stream=True)

    def tags(self, repository: str, limit: int) -> tuple[str, ...]:
        """The repository's tags as the registry lists them, at most ``limit``."""
        url = self.url(f"/v2/{repository}/tags/list")
        response = self._send("GET", url, scope=_pull(repository), params={"n": limit}, stream=True)
        with response:
            raise_for_registry_status(response, f"GET tags of {repository}")
            data = read_at_most(response, MAX_MANIFEST_BYTES + 1, f"tags of {repository}")
        document = parse_bounded_json(data, f"tags of {repository}", "tag list")
        tags = document.get("tags") if isinstance(document, dict) else None
        if not isinstance(tags, list):
            raise BadResponse(f"tags of {repository}: the registry's answer has no tag list")
        return tuple(t for t in tags[:limit] if isinstance(t, str))

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
        what = f"manifest {reference} in {repository}"
        with response:
            raise_for_registry_status(response, f"GET manifest {reference} from {repository}")
            data = read_at_most(response, MAX_MANIFEST_BYTES + 1, what)
        if len(data) > MAX_MANIFEST_BYTES:
            raise BadResponse(f"{what} is larger than 4 MiB")
        digest = sha256_digest(data)
        announced = response.headers.get("Docker-Content-Digest") or None
        for named in (reference if reference.startswith("sha256:") else None, announced):
            if named is not None and digest != named:
                raise BadResponse(
                    f"manifest {reference} from {repository} hashes to {digest}: the registry "
                    f"returned other bytes than {'the digest' if named == reference else named} "
                    "names"
                )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(data, media_type, digest)

    def head_manifest(self, repository: str, reference: str, accept: tuple[str, ...]) -> str | None:
        """The manifest's digest (``Docker-Content-Digest``) when it exists, else None."""
        url = self.url(f"/v2/{repository}/manifests/{reference}")
        headers = {"Accept": ", ".join(accept)}
        response = self._send("HEAD", url, scope=_pull(repository), headers=headers)
        if response.status_code == 404:
            return None
        raise_for_registry_status(response, f"HEAD manifest {reference} in {repository}")
        digest = response.headers.get("Docker-Content-Digest", "")
        if not is_digest(digest):
            raise BadResponse(
                f"registry {self.host} did not report the digest of {repository}:{reference}"
            )
        return digest

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Deletes by digest; False when it was already gone."""
        url = self.url(f"/v2/{repository}/manifests/{digest}")
        response = self._send("DELETE", url, scope=f"repository:{repository}:delete")
        if response.status_code == 404:
            return False
        raise_for_registry_status(response, f"DELETE manifest {digest} in {repository}")
        return True

    def delete_blob(self, repository: str, digest: str) -> bool:
        """Unlinks a blob from ``repository``; False when it was not linked there."""
        url = self.url(f"/v2/{repository}/blobs/{digest}")
        response = self._send("DELETE", url, scope=f"repository:{repository}:delete")
        if response.status_code == 404:
            return False
        raise_for_registry_status(response, f"DELETE blob {digest} in {repository}")
        return True


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _location(response: requests.Response) -> str:
    location = response.headers.get("Location")
    if not location:
        raise BadResponse(f"{response.request.method} {response.url}: no Location header")
    return urljoin(response.url, location)
