"""A Hugging Face Hub emulator: the Hub's HTTP API on 127.0.0.1, as ``huggingface_hub`` 2.x uses it.

Two real HTTP(S) servers in threads: the Hub (API and ``/resolve``) and a "CDN" on another port that
serves LFS objects by sha256, the way the Hub redirects large files to its storage origin. It
serves repositories from files on disk and speaks what the real Hub speaks:

- ``GET /api/models/{repo}[/revision/{rev}][?blobs=true]``: commit sha, tags, pipeline tag,
  siblings (sizes and LFS sha256 with ``blobs``);
- ``GET /api/models/{repo}/tree/{rev}[/{path}][?recursive=true]``: paged with ``Link: rel=next``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit`` and ``ETag``; an LFS file answers
  302 to the CDN with ``X-Linked-Etag`` and ``X-Linked-Size``; ``Range`` → 206 + ``Content-Range``;
- errors with ``X-Error-Code``/``X-Error-Message``: to anonymous callers a missing or private
  repository is 401 ``RepoNotFound`` (with a token: 404), an unknown revision 404
  ``RevisionNotFound``, a missing file 404 ``EntryNotFound``, a gated repository's files 401/403
  ``GatedRepo`` (its API metadata stays public), an unknown token 401.

Every request is recorded (server, method, path, Range, status, body bytes, whether it carried an
Authorization header), so tests can assert that inspection fetched only ranges of the weights and
that the token never reached the CDN.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.ground.certs import KeyPair
from tests.ground.hub_repo import HubRepo, RepoFile, info_document, tree_entries

CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class RecordedRequest:
    server: str
    """``hub`` or ``cdn``."""
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int
    authorized: bool


class HubEmulator:
    def __init__(self, page_size: int = 1000, tls: KeyPair | None = None) -> None:
        self.page_size = page_size
        self.repos: dict[str, HubRepo] = {}
        self.bytes_per_second: float | None = None
        """Throttles file bodies (to act while a transfer is in flight); None: full speed."""
        self.tokens: dict[str, set[str]] = {}
        """Valid token → ids of the private and gated repositories it grants."""
        self._blobs: dict[str, RepoFile] = {}
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._hub = _Server(self, "hub", tls)
        self._cdn = _Server(self, "cdn", tls)
        self.url = self._hub.url
        self.cdn_url = self._cdn.url

    def add(self, repo: HubRepo) -> HubRepo:
        self.repos[repo.repo_id] = repo
        for entry in repo.entries.values():
            if entry.lfs:
                self._blobs[entry.sha256] = entry
        return repo

    def grant(self, token: str, *repo_ids: str) -> None:
        self.tokens.setdefault(token, set()).update(repo_ids)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._log.append(request)

    def blob(self, sha256: str) -> RepoFile | None:
        return self._blobs.get(sha256)

    def close(self) -> None:
        self._hub.close()
        self._cdn.close()


class _Server:
    def __init__(self, hub: HubEmulator, role: str, tls: KeyPair | None) -> None:
        handler = type(f"{role}Handler", (_Handler,), {"hub": hub, "role": role})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubEmulator
    role: str

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log is ``HubEmulator.requests``

    def handle(self) -> None:
        # The client may close a kept-alive connection at any time (e.g. after a partial read).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._status, self._sent = 0, 0
        try:
            if self.role == "cdn":
                self._cdn()
            else:
                self._hub_route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.hub.record(
                RecordedRequest(
                    server=self.role,
                    method=self.command,
                    path=urlsplit(self.path).path,
                    range=self.headers.get("Range"),
                    status=self._status,
                    body_bytes=self._sent,
                    authorized="Authorization" in self.headers,
                )
            )

    # ---- responses --------------------------------------------------------------------------

    def _reply(self, status: int, body: bytes = b"", headers: Mapping[str, str] = {}) -> None:
        self._status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self._sent += len(body)

    def _json(self, document: object, headers: Mapping[str, str] = {}) -> None:
        body = json.dumps(document).encode()
        self._reply(200, body, {"Content-Type": "application/json", **headers})

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._reply(status, json.dumps({"error": message}).encode(), headers)

    def _file(self, entry: RepoFile, headers: dict[str, str]) -> None:
        """The file's bytes, the whole or the requested range, streamed from disk."""
        start, end = 0, entry.size - 1
        status = 200
        header = self.headers.get("Range")
        match = _RANGE.match(header or "")
        if match and (match.group(1) or match.group(2)):
            first, last = match.group(1), match.group(2)
            if first:
                start, end = int(first), min(int(last), entry.size - 1) if last else entry.size - 1
            else:
                start = max(entry.size - int(last), 0)
            if start >= entry.size or start > end:
                headers["Content-Range"] = f"bytes */{entry.size}"
                return self._reply(416, b"", headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        self._status = status
        self.send_response(status)
        for name, value in {**headers, "Accept-Ranges": "bytes"}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if self.command == "HEAD":
            return None
        with entry.source.open("rb") as handle:
            handle.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = handle.read(min(CHUNK, remaining))
                self.wfile.write(chunk)
                self._sent += len(chunk)
                remaining -= len(chunk)
                if self.hub.bytes_per_second:
                    time.sleep(len(chunk) / self.hub.bytes_per_second)
        return None

    # ---- the CDN --------------------------------------------------------------------------

    def _cdn(self) -> None:
        entry = self.hub.blob(urlsplit(self.path).path.strip("/"))
        if entry is None:
            return self._reply(404, b"NoSuchKey")
        return self._file(entry, {"ETag": f'"{entry.sha256}"'})

    # ---- the Hub ----------------------------------------------------------------------------

    def _hub_route(self) -> None:
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        query = parse_qs(parts.query)
        if segments[:2] == ["api", "models"] and len(segments) >= 4 and _api_route(segments[4:]):
            repo, rest = self._repo("/".join(segments[2:4]), files=False), segments[4:]
            if repo is None:
                return None
            if rest and rest[0] == "tree":
                return self._tree(repo, rest[1], "/".join(rest[2:]), query)
            return self._info(repo, rest[1] if rest else "main", "blobs" in query)
        if len(segments) >= 5 and segments[2] == "resolve":
            repo = self._repo("/".join(segments[:2]), files=True)
            if repo is not None:
                return self._resolve(repo, segments[3], "/".join(segments[4:]))
            return None
        return self._error(404, None, "Not Found")

    def _repo(self, repo_id: str, *, files: bool) -> HubRepo | None:
        """The repository if this caller may see it; else the Hub's error is sent, None returned."""
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if token is not None and token not in self.hub.tokens:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        granted = self.hub.tokens.get(token, set()) if token else set()
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and repo_id not in granted):
            status = 404 if token else 401
            self._error(status, "RepoNotFound", "Repository not found")
            return None
        if repo.failure is not None:
            self._error(repo.failure, None, "Internal Error - We're working hard to fix this")
            return None
        if files and repo.gated and repo_id not in granted:
            message = f"Access to model {repo_id} is restricted; you are not in the authorized list"
            self._error(403 if token else 401, "GatedRepo", message)
            return None
        return repo

    def _commit(self, repo: HubRepo, revision: str) -> str | None:
        if revision in repo.refs or revision == repo.commit:
            return repo.commit
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return None

    def _info(self, repo: HubRepo, revision: str, blobs: bool) -> None:
        if self._commit(repo, revision) is not None:
            self._json(info_document(repo, blobs))

    def _tree(self, repo: HubRepo, revision: str, under: str, query: dict[str, list[str]]) -> None:
        commit = self._commit(repo, revision)
        if commit is None:
            return
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        listing = tree_entries(repo, under, recursive)
        if under and not listing:
            return self._error(404, "EntryNotFound", f"{under} does not exist on {revision}")
        cursor = int(query.get("cursor", ["0"])[0])
        page = listing[cursor : cursor + self.hub.page_size]
        headers = {}
        if cursor + self.hub.page_size < len(listing):
            target = f"{self.hub.url}{urlsplit(self.path).path}?recursive={str(recursive).lower()}"
            headers["Link"] = f'<{target}&cursor={cursor + self.hub.page_size}>; rel="next"'
        return self._json(page, headers)

    def _resolve(self, repo: HubRepo, revision: str, path: str) -> None:
        commit = self._commit(repo, revision)
        if commit is None:
            return None
        entry = repo.entries.get(path)
        if entry is None:
            return self._error(404, "EntryNotFound", "Entry not found")
        headers = {"X-Repo-Commit": commit}
        if not entry.lfs:
            return self._file(entry, {**headers, "ETag": f'"{entry.git_oid}"'})
        location = f"{self.hub.cdn_url}/{entry.sha256}?X-Amz-Signature=emulated"
        headers.update(
            {
                "Location": location,
                "ETag": f'"{entry.sha256}"',
                "X-Linked-Etag": f'"{entry.sha256}"',
                "X-Linked-Size": str(entry.size),
            }
        )
        return self._reply(302, b"", headers)


def _api_route(rest: list[str]) -> bool:
    """``/api/models/{repo}``, ``…/revision/{rev}``, ``…/tree/{rev}[/{path}]``."""
    if not rest:
        return True
    if rest[0] == "revision":
        return len(rest) == 2
    return rest[0] == "tree" and len(rest) >= 2


@contextlib.contextmanager
def run_hub(page_size: int = 1000, tls: KeyPair | None = None) -> Iterator[HubEmulator]:
    """The emulator for a ``with`` block; HTTPS on both servers when ``tls`` is given."""
    hub = HubEmulator(page_size=page_size, tls=tls)
    try:
        yield hub
    finally:
        hub.close()


def resolve_path(repo_id: str, revision: str, path: str) -> str:
    """The ``/resolve`` path of a file, as the request log records it."""
    return f"/{repo_id}/resolve/{quote(revision, safe='')}/{path}"
