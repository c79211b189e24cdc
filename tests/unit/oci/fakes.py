"""In-memory stand-ins for the network: a requests transport that answers from a function, a
fake clock that records sleeps, and a tiny registry speaking enough of the distribution API
(blobs, chunked uploads, manifests) for the unit tests of the client and the uploader."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter

Answer = tuple[int, dict[str, str], bytes]
Handler = Callable[[requests.PreparedRequest], Answer]


class FakeTransport(BaseAdapter):
    """Answers every request with ``handler(request)``; an exception is raised as sent."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        self.requests.append(request)
        status, headers, body = self.handler(request)
        if request.method == "HEAD":
            body = b""
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body),
            headers=headers,
            status=status,
            preload_content=False,
            request_method=request.method,  # a HEAD's Content-Length announces no body
        )
        return HTTPAdapter().build_response(request, raw)

    def close(self) -> None:
        pass


@dataclass
class FakeClock:
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def error_body(code: str, message: str = "") -> bytes:
    return (f'{{"errors":[{{"code":"{code}","message":"{message}"}}]}}').encode()


@dataclass
class MemoryRegistry:
    """Blobs and manifests in dicts; uploads as growing bytearrays."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    patches: int = 0
    fail_patch: Callable[[int], Answer | None] = lambda _: None
    cut_patch: Callable[[int], int | None] = lambda _: None
    """For PATCH number n: how many of its body's bytes land before the connection breaks."""
    puts_with_body: int = 0
    patch_sizes: list[int] = field(default_factory=list)
    """Bytes each PATCH delivered."""

    def __call__(self, request: requests.PreparedRequest) -> Answer:
        url = urlsplit(request.url or "")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        method = request.method or ""
        if m := re.match(r"^/v2/(.+)/blobs/uploads/([^/]*)$", url.path):
            return self._upload(method, m.group(1), m.group(2), query, request)
        if m := re.match(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]+)$", url.path):
            blob = self.blobs.get(m.group(2))
            if blob is None:
                return 404, {}, error_body("BLOB_UNKNOWN")
            return 200, {"Content-Length": str(len(blob))}, b"" if method == "HEAD" else blob
        if m := re.match(r"^/v2/(.+)/manifests/(.+)$", url.path):
            return self._manifest(method, m.group(2), request)
        return 404, {}, b""

    def _upload(
        self, method: str, repo: str, session: str, query: dict[str, str], request: Any
    ) -> Answer:
        location = {"Location": f"/v2/{repo}/blobs/uploads/{session}"}
        if method == "POST":
            session = uuid.uuid4().hex
            self.uploads[session] = bytearray()
            return 202, {"Location": f"/v2/{repo}/blobs/uploads/{session}"}, b""
        data = self.uploads.get(session)
        if data is None:
            return 404, {}, error_body("BLOB_UPLOAD_UNKNOWN")
        if method == "GET":
            # As docker-registry 2.8: an empty session's status is "0-0", as a 1-byte one's.
            return 204, {**location, "Range": f"0-{max(len(data) - 1, 0)}"}, b""
        if method == "PATCH":
            self.patches += 1
            if failure := self.fail_patch(self.patches):
                _drain(request.body)  # the client sends its body before it reads the answer
                return failure
            claimed = request.headers.get("Content-Range")  # absent in a streamed upload
            if claimed is not None and int(claimed.split("-")[0]) != len(data):
                return 416, {}, error_body("BLOB_UPLOAD_INVALID")
            return self._patch(data, request, self.cut_patch(self.patches), location)
        body = bytes(request.body or b"")
        if method == "PUT":
            digest = query["digest"]
            self.puts_with_body += bool(body)
            data += body
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                return 400, {}, error_body("DIGEST_INVALID", "digest did not match")
            self.blobs[digest] = bytes(data)
            del self.uploads[session]
            return 201, {}, b""
        return 405, {}, b""

    def _patch(
        self, data: bytearray, request: Any, cut: int | None, location: dict[str, str]
    ) -> Answer:
        """Takes the body piece by piece as a registry writes it: the bytes of a body that
        breaks (``cut``) stay in the session. A chunk upload (``Content-Length``) must carry
        exactly that many bytes; a streamed one (chunked) takes what comes."""
        body = request.body
        pieces = [body] if isinstance(body, (bytes, bytearray)) else body
        received = 0
        for piece in pieces:
            if cut is not None and received + len(piece) >= cut:
                data += piece[: cut - received]
                self.patch_sizes.append(cut)
                raise requests.ConnectionError("connection reset by the fake registry")
            data += piece
            received += len(piece)
        self.patch_sizes.append(received)
        length = request.headers.get("Content-Length")
        if length is not None and received != int(length):
            return 400, {}, error_body("SIZE_INVALID", "body shorter than Content-Length")
        return 202, {**location, "Range": f"0-{len(data) - 1}"}, b""

    def _manifest(self, method: str, reference: str, request: Any) -> Answer:
        if method == "PUT":
            body = bytes(request.body)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self.manifests[reference] = self.manifests[digest] = body
            return 201, {"Docker-Content-Digest": digest}, b""
        manifest = self.manifests.get(reference)
        if manifest is None:
            return 404, {}, error_body("MANIFEST_UNKNOWN")
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        return 200, headers, b"" if method == "HEAD" else manifest


def _drain(body: Any) -> None:
    for _ in [body] if isinstance(body, (bytes, bytearray, type(None))) else body:
        pass
