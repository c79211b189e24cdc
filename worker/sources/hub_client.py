"""The worker's only door to the Hugging Face Hub.

A small facade over the Hub's HTTP API as ``huggingface_hub`` 2.x speaks it: the revision endpoint
pins a branch or tag to a commit sha (with the pipeline tag and tags), the tree endpoint lists the
files at that commit (sizes, LFS sha256), and ``/resolve/<commit>/<path>`` serves a file's bytes,
by range or as a stream, following the Hub's redirect to its LFS/CDN origin. The requests go
through one ``httpx2`` client of our own, so that every call has a timeout, the configured CA,
and no retry loop with sleeps (the Job retries). The worker does not import ``huggingface_hub``:
of it, only two builders (a file's URL, the headers) were used, and its import cost the CLI
more than they are worth (docs/inspection.md).

``raise_for_hub_error`` is the one translation of a Hub answer into the worker's errors: the
Hub's ``X-Error-Code`` wins over the HTTP status. The token travels only in the Authorization
header of requests to the endpoint (httpx drops it on the cross-origin CDN redirect); it is never
part of a URL, an error or a log line.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import platform
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpx2

from worker.errors import (
    InvalidSource,
    RevisionNotFound,
    SourceNotFound,
    SourceUnauthorized,
    SourceUnavailable,
    WorkerError,
)
from worker.sources.settings import SourceSettings

MAX_API_RESPONSE_BYTES = 32 << 20
MAX_TREE_PAGES = 10_000
MAX_TAGS = 256
MAX_TAG_LENGTH = 128
# When a server ignores Range and answers 200 with the whole file, we accept it for files this
# small (configs served straight from git) and refuse to pull a weight file whole.
MAX_UNRANGED_BYTES = 16 << 20
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _library_version() -> str:
    try:
        return importlib.metadata.version("ai-models")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def hub_headers(token: str | None) -> dict[str, str]:
    """Who is asking (the Hub counts clients by User-Agent) and the token of the settings, if
    any: never one stored on disk."""
    agent = f"ai-models/{_library_version()}; python/{platform.python_version()}"
    headers = {"User-Agent": agent}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@dataclass(frozen=True)
class HubRevision:
    repo_id: str
    commit: str
    """The 40-hex commit sha the revision pointed to when asked."""
    pipeline_tag: str | None
    tags: tuple[str, ...]
    gated: bool
    private: bool


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None
    """The LFS object id (sha256 of the content); None for a small file kept in git."""


def _error_message(response: httpx2.Response) -> str:
    message = response.headers.get("X-Error-Message", "")
    return f" ({message[:300]})" if message else ""


RECREATE = "a Model's source cannot change: delete the Model and create it again"
"""What a message suggests when only a new spec.source (URL or authSecretRef) can fix it."""


def raise_for_hub_error(response: httpx2.Response, subject: str, *, authenticated: bool) -> None:
    """Raise the worker error for a failed Hub answer (nothing for 1xx-3xx), chaining the cause."""
    if response.status_code < 400:
        return
    try:
        response.raise_for_status()
    except httpx2.HTTPStatusError as exc:
        raise _hub_error(response, subject, authenticated) from exc


def _hub_error(response: httpx2.Response, subject: str, authenticated: bool) -> WorkerError:
    status, code = response.status_code, response.headers.get("X-Error-Code")
    detail = _error_message(response)
    if code == "GatedRepo":
        # spec.source is immutable: what a Model without a token needs is a new Model.
        how = (
            "the token's account has not been granted access: accept the conditions on the "
            "model page with that account, then retry"
            if authenticated
            else f"{RECREATE} with an authSecretRef whose Secret holds the token of an account "
            "that accepted its conditions"
        )
        return SourceUnauthorized(f"{subject}: the repository is gated; {how}")
    if code == "RevisionNotFound":
        return RevisionNotFound(f"{subject}: the revision does not exist in the repository")
    if code == "EntryNotFound":
        return SourceNotFound(f"{subject}: the file does not exist at this revision{detail}")
    if status == 401 and not authenticated:
        # To anonymous callers the Hub answers 401 for private, gated and missing repositories
        # alike; only a token can tell them apart.
        return SourceUnauthorized(
            f"{subject}: the Hub answered 401 to an anonymous request: the repository does not "
            f"exist or is private; {RECREATE} with the right URL, or with an authSecretRef "
            "whose Secret holds a token that can read it"
        )
    if status in (401, 403) and authenticated:
        return SourceUnauthorized(
            f"{subject}: the Hub refused the token (HTTP {status}){detail}; check that the token "
            "is valid and grants read access to this repository"
        )
    if status == 403:
        return SourceUnauthorized(
            f"{subject}: the Hub refused anonymous access (HTTP 403){detail}; {RECREATE} with "
            "an authSecretRef whose Secret holds a token that can read it"
        )
    if code == "RepoNotFound" or status in (404, 410):
        return SourceNotFound(
            f"{subject}: the repository does not exist, or the token has no access to it{detail}"
        )
    if status == 400:
        return InvalidSource(f"{subject}: the Hub rejected the request as malformed{detail}")
    return SourceUnavailable(f"{subject}: the Hub answered HTTP {status}{detail}")


@contextlib.contextmanager
def _transport_errors(subject: str) -> Iterator[None]:
    """Network failures (timeouts, resets, TLS, too many redirects) are transient."""
    try:
        yield
    except httpx2.TimeoutException as exc:
        raise SourceUnavailable(f"{subject}: the Hub did not answer in time ({exc})") from exc
    except httpx2.RequestError as exc:
        raise SourceUnavailable(f"{subject}: cannot reach the Hub: {exc}") from exc


def _read_at_most(response: httpx2.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body, without reading the rest."""
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        total += len(chunk)
        if total >= limit:
            break
    return b"".join(chunks)[:limit]


class HubClient:
    """Hub calls for one settings value; cheap to create, holds one connection pool."""

    def __init__(
        self, settings: SourceSettings, *, transport: httpx2.BaseTransport | None = None
    ) -> None:
        self._endpoint = settings.hf_endpoint
        self._authenticated = settings.hf_token is not None
        self._headers = hub_headers(settings.hf_token)
        # Sizes and ranges must be of the bytes as stored, never of a compressed encoding.
        self._headers["Accept-Encoding"] = "identity"
        self._client = httpx2.Client(
            headers=self._headers,
            verify=settings.verify(),
            timeout=httpx2.Timeout(settings.timeout_seconds),
            follow_redirects=True,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def revision(self, repo_id: str, revision: str | None) -> HubRevision:
        """Pin ``revision`` (default branch when None) to its commit, with the repo's metadata."""
        url = f"{self._endpoint}/api/models/{repo_id}"
        if revision is not None:
            url += f"/revision/{quote(revision, safe='')}"
        subject = repo_id if revision is None else f"{repo_id}@{revision}"
        document = self._get_json(url, subject)
        if not isinstance(document, dict):
            raise SourceUnavailable(f"{subject}: the Hub's revision answer is not a JSON object")
        commit = document.get("sha")
        if not isinstance(commit, str) or not _COMMIT.match(commit):
            raise SourceUnavailable(f"{subject}: the Hub's answer carries no commit sha")
        pipeline_tag = document.get("pipeline_tag")
        return HubRevision(
            repo_id=repo_id,
            commit=commit,
            pipeline_tag=pipeline_tag if _is_tag(pipeline_tag) else None,
            tags=_tags(document.get("tags")),
            gated=document.get("gated") not in (None, False),
            private=document.get("private") is True,
        )

    def list_files(self, repo_id: str, commit: str, limit: int) -> list[HubFile]:
        """Every file at ``commit`` (recursive), stopping once more than ``limit`` are listed."""
        subject = f"{repo_id}@{commit[:12]}"
        url: str | None = f"{self._endpoint}/api/models/{repo_id}/tree/{commit}?recursive=true"
        files: list[HubFile] = []
        for _ in range(MAX_TREE_PAGES):
            if url is None or len(files) > limit:
                return files
            response, page = self._get_json_response(url, subject)
            if not isinstance(page, list):
                raise SourceUnavailable(f"{subject}: the Hub's tree listing is not a JSON list")
            files.extend(_tree_file(subject, entry) for entry in page if _is_file_entry(entry))
            url = self._next_page(response, subject) if page else None
        raise SourceUnavailable(f"{subject}: the tree listing has more than {MAX_TREE_PAGES} pages")

    def read_range(self, repo_id: str, commit: str, path: str, offset: int, length: int) -> bytes:
        """``length`` bytes of one file at ``offset`` with a single ranged GET."""
        subject = f"{repo_id}/{path}@{commit[:12]}"
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        url = self.file_url(repo_id, commit, path)
        with _transport_errors(subject), self._client.stream("GET", url, headers=headers) as r:
            raise_for_hub_error(r, subject, authenticated=self._authenticated)
            if r.status_code == 206:
                _check_range_start(r, offset, subject)
                return _read_at_most(r, length)
            if offset + length > MAX_UNRANGED_BYTES:
                raise SourceUnavailable(f"{subject}: the server ignored the Range header")
            return _read_at_most(r, offset + length)[offset:]

    def stream(
        self, repo_id: str, commit: str, path: str, offset: int = 0, chunk_size: int = 8 << 20
    ) -> Iterator[bytes]:
        """The file from ``offset`` to its end, in chunks of ``chunk_size`` (the last shorter)."""
        subject = f"{repo_id}/{path}@{commit[:12]}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        url = self.file_url(repo_id, commit, path)
        with _transport_errors(subject), self._client.stream("GET", url, headers=headers) as r:
            raise_for_hub_error(r, subject, authenticated=self._authenticated)
            chunks = r.iter_bytes(chunk_size)
            if offset and r.status_code == 206:
                _check_range_start(r, offset, subject)
            elif offset:
                chunks = _skip(chunks, offset)  # the server ignored Range: drop the prefix
            yield from chunks

    def file_url(self, repo_id: str, commit: str, path: str) -> str:
        """``/<repo>/resolve/<commit>/<path>``, the path percent-encoded but for its slashes."""
        return f"{self._endpoint}/{repo_id}/resolve/{quote(commit, safe='')}/{quote(path)}"

    def _get_json(self, url: str, subject: str) -> object:
        return self._get_json_response(url, subject)[1]

    def _get_json_response(self, url: str, subject: str) -> tuple[httpx2.Response, object]:
        with _transport_errors(subject), self._client.stream("GET", url) as response:
            raise_for_hub_error(response, subject, authenticated=self._authenticated)
            raw = _read_at_most(response, MAX_API_RESPONSE_BYTES + 1)
        if len(raw) > MAX_API_RESPONSE_BYTES:
            raise SourceUnavailable(f"{subject}: the Hub's answer exceeds {MAX_API_RESPONSE_BYTES}")
        try:
            return response, json.loads(raw)
        except ValueError as exc:
            raise SourceUnavailable(f"{subject}: the Hub's answer is not JSON") from exc

    def _next_page(self, response: httpx2.Response, subject: str) -> str | None:
        url = response.links.get("next", {}).get("url")
        if url is None:
            return None
        # The token goes along with every request: only ever to the configured endpoint.
        if _origin(url) != _origin(self._endpoint):
            raise SourceUnavailable(f"{subject}: the tree listing points to another host")
        return url


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _is_tag(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TAG_LENGTH


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(tag for tag in value[:MAX_TAGS] if _is_tag(tag)))


def _is_file_entry(entry: object) -> bool:
    return isinstance(entry, dict) and entry.get("type") == "file"


def _tree_file(subject: str, entry: object) -> HubFile:
    assert isinstance(entry, dict)
    path, size, lfs = entry.get("path"), entry.get("size"), entry.get("lfs")
    if not isinstance(path, str) or not isinstance(size, int) or isinstance(size, bool):
        raise SourceUnavailable(f"{subject}: malformed entry in the Hub's tree listing")
    sha256 = lfs.get("oid") if isinstance(lfs, dict) else None
    if not (isinstance(sha256, str) and _SHA256.match(sha256)):
        sha256 = None
    return HubFile(path=path, size=size, sha256=sha256)


def _check_range_start(response: httpx2.Response, offset: int, subject: str) -> None:
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if match is None or int(match.group(1)) != offset:
        raise SourceUnavailable(f"{subject}: the server answered a range other than requested")


def _skip(chunks: Iterator[bytes], count: int) -> Iterator[bytes]:
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0
