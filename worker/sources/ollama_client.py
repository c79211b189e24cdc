"""The worker's only door to the Ollama registry (a Docker/OCI distribution registry).

Three calls: the manifest of ``library/<name>:<tag>`` (verified against its digest), a small blob
read whole with a size cap (the image config, params, template), and a blob by range or as a
stream (the GGUF). ``requests`` runs with ``trust_env=False`` so that ``REQUESTS_CA_BUNDLE`` and
friends cannot silently replace the configured CA; proxies from the environment are still applied,
explicitly, per request. ``raise_for_registry_error`` is the one translation of a registry answer
into the worker's errors (the distribution error code wins over the HTTP status).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import requests

from worker.errors import (
    InvalidSource,
    SourceNotFound,
    SourceUnauthorized,
    SourceUnavailable,
    WorkerError,
)
from worker.sources.settings import SourceSettings

MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
# The distribution registry answers 404 to a manifest GET without Accept: always send both.
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
MAX_MANIFEST_BYTES = 4 << 20
MAX_ERROR_BODY_BYTES = 64 << 10
MAX_TAGS = 1000
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class RegistryManifest:
    raw: bytes
    digest: str
    """``sha256:<hex>`` of ``raw``, computed here and checked against the registry's header."""
    document: dict[str, object]


def _error_codes(response: requests.Response) -> set[str]:
    try:
        body = json.loads(_read_at_most(response, MAX_ERROR_BODY_BYTES) or b"{}")
    except (ValueError, OSError, requests.RequestException):
        return set()  # an error without a readable body still has its HTTP status
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return set()
    return {e["code"] for e in errors if isinstance(e, dict) and isinstance(e.get("code"), str)}


def raise_for_registry_error(response: requests.Response, subject: str) -> None:
    """Raise the worker error for a failed registry answer, chaining the HTTP error."""
    if response.status_code < 400:
        return
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        raise _registry_error(response, subject) from exc


def _registry_error(response: requests.Response, subject: str) -> WorkerError:
    status, codes = response.status_code, _error_codes(response)
    if status in (401, 403) or codes & {"UNAUTHORIZED", "DENIED"}:
        return SourceUnauthorized(f"{subject}: the registry refused access (HTTP {status})")
    if "NAME_UNKNOWN" in codes:
        return SourceNotFound(f"{subject}: no such model in the registry")
    # A registry answers MANIFEST_UNKNOWN for a missing tag and a missing model alike; the
    # source refines it with the tag list (RevisionNotFound when the model exists).
    if status in (404, 410) or codes & {"MANIFEST_UNKNOWN", "BLOB_UNKNOWN"}:
        return SourceNotFound(
            f"{subject}: not found in the registry; the name or the tag is wrong: delete the "
            "Model and create it again with one that https://ollama.com/library lists"
        )
    if status == 400 or codes & {"NAME_INVALID", "TAG_INVALID", "DIGEST_INVALID"}:
        return InvalidSource(f"{subject}: the registry rejected the reference as invalid")
    return SourceUnavailable(f"{subject}: the registry answered HTTP {status}")


@contextlib.contextmanager
def _transport_errors(subject: str) -> Iterator[None]:
    try:
        yield
    except requests.Timeout as exc:
        raise SourceUnavailable(f"{subject}: the registry did not answer in time") from exc
    except requests.RequestException as exc:
        raise SourceUnavailable(f"{subject}: cannot reach the registry: {exc}") from exc


class OllamaRegistryClient:
    def __init__(self, settings: SourceSettings) -> None:
        self._base = settings.ollama_registry
        # requests takes a CA file path (not an SSLContext) or a flag.
        self._verify: str | bool = False if settings.insecure else (settings.ca_bundle or True)
        self._timeout = settings.timeout_seconds
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.headers["User-Agent"] = "ai-models-worker"

    def close(self) -> None:
        self._session.close()

    def manifest(self, repository: str, reference: str) -> RegistryManifest:
        subject = f"{repository}:{reference}"
        url = f"{self._base}/v2/{repository}/manifests/{reference}"
        with self._get(url, subject, {"Accept": MANIFEST_ACCEPT}) as response:
            raw = _read_at_most(response, MAX_MANIFEST_BYTES + 1)
            announced = response.headers.get("Docker-Content-Digest")
        if len(raw) > MAX_MANIFEST_BYTES:
            raise SourceUnavailable(f"{subject}: manifest exceeds {MAX_MANIFEST_BYTES} bytes")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if announced and announced != digest:
            raise SourceUnavailable(
                f"{subject}: the manifest hashes to {digest}, not to the announced {announced}"
            )
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise SourceUnavailable(f"{subject}: the manifest is not JSON") from exc
        if not isinstance(document, dict):
            raise SourceUnavailable(f"{subject}: the manifest is not a JSON object")
        return RegistryManifest(raw=raw, digest=digest, document=document)

    def tags(self, repository: str) -> tuple[str, ...] | None:
        """The repository's tags (at most ``MAX_TAGS``), or None when the registry will not say."""
        url = f"{self._base}/v2/{repository}/tags/list?n={MAX_TAGS}"
        try:
            with self._get(url, repository) as response:
                document = json.loads(_read_at_most(response, MAX_MANIFEST_BYTES))
        except (WorkerError, ValueError):
            return None
        tags = document.get("tags") if isinstance(document, dict) else None
        if not isinstance(tags, list):
            return None
        return tuple(t for t in tags[:MAX_TAGS] if isinstance(t, str))

    def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        """A small blob whole, refusing more than ``limit`` bytes; its digest is verified."""
        subject = f"{repository}@{digest}"
        with self._get(self._blob_url(repository, digest), subject) as response:
            data = _read_at_most(response, limit + 1)
        if len(data) > limit:
            raise SourceUnavailable(f"{subject}: blob exceeds the {limit}-byte limit")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise SourceUnavailable(f"{subject}: blob content does not match its digest")
        return data

    def read_range(self, repository: str, digest: str, offset: int, length: int) -> bytes:
        subject = f"{repository}@{digest[:19]}"
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        with self._get(self._blob_url(repository, digest), subject, headers) as response:
            if response.status_code != 206:
                raise SourceUnavailable(f"{subject}: the registry ignored the Range header")
            _check_range_start(response, offset, subject)
            return _read_at_most(response, length)

    def stream_blob(
        self, repository: str, digest: str, offset: int = 0, chunk_size: int = 8 << 20
    ) -> Iterator[bytes]:
        subject = f"{repository}@{digest[:19]}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._get(self._blob_url(repository, digest), subject, headers) as response:
            if offset:
                if response.status_code != 206:
                    raise SourceUnavailable(f"{subject}: the registry ignored the Range header")
                _check_range_start(response, offset, subject)
            with _transport_errors(subject):
                yield from response.iter_content(chunk_size)

    def _blob_url(self, repository: str, digest: str) -> str:
        if not DIGEST.match(digest):
            raise SourceUnavailable(f"{repository}: {digest[:80]!r} is not a sha256 digest")
        return f"{self._base}/v2/{repository}/blobs/{digest}"

    @contextlib.contextmanager
    def _get(
        self,
        url: str,
        subject: str,
        headers: dict[str, str] | None = None,
    ) -> Iterator[requests.Response]:
        with _transport_errors(subject):
            response = self._session.get(
                url,
                headers=headers,
                stream=True,
                timeout=self._timeout,
                verify=self._verify,
                proxies=requests.utils.get_environ_proxies(url),
            )
        try:
            raise_for_registry_error(response, subject)
            yield response
        finally:
            response.close()


def _read_at_most(response: requests.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(64 << 10):
        chunks.append(chunk)
        total += len(chunk)
        if total >= limit:
            break
    return b"".join(chunks)[:limit]


def _check_range_start(response: requests.Response, offset: int, subject: str) -> None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None or int(match.group(1)) != offset:
        raise SourceUnavailable(f"{subject}: the registry answered a range other than requested")
