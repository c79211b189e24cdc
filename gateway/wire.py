"""What a client sends, parsed and bounded before use: the bearer token, the session path, the
query, body lengths, the offset a PATCH claims (``Upload-Offset`` or ``Content-Range``) and the
commit body. Pure: every function returns a value or raises ``Refusal``.

Content-Range follows RFC 9110's byte-range form as tus-like clients send it:
``bytes <first>-<last>/<total or *>``; ``<last> - <first> + 1`` must equal the body's
``Content-Length``. Whether the first byte is where the upload stands (a gap or an overlap) is
for ``uploads`` to decide: it knows the committed offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from pydantic import ValidationError

from api.upload import (
    API_PREFIX,
    COMMIT_PATH,
    MAX_TOKEN_LENGTH,
    SESSION_PREFIX,
    CommitRequest,
    is_safe_filename,
    upload_format,
)
from gateway.errors import Refusal, bad_request

MAX_QUERY_LENGTH = 2048
MAX_COMMIT_BODY = 4096
_SESSION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,251}[a-z0-9])?")
_DIGITS = re.compile(r"\d{1,19}")
_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Target:
    session: str
    commit: bool


@dataclass(frozen=True)
class Claim:
    """Where a PATCH says its bytes go."""

    offset: int
    total: int | None = None
    """The whole file's size, when Content-Range names it."""


def bearer_token(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when missing or malformed."""
    if not header or len(header) > MAX_TOKEN_LENGTH + 16:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


def target(path: str) -> Target | None:
    """``/v1/uploads/upload-…`` or ``…/commit``; None for anything else."""
    rest = path.removeprefix(API_PREFIX + "/")
    if rest == path:
        return None
    session, _, tail = rest.partition("/")
    if not _SESSION.fullmatch(session) or tail not in ("", COMMIT_PATH):
        return None
    if not session.startswith(SESSION_PREFIX):  # only records are read, no other Secret
        return None
    return Target(session, tail == COMMIT_PATH)


def query(text: str) -> dict[str, str]:
    if len(text) > MAX_QUERY_LENGTH:
        raise bad_request(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise bad_request("the query is malformed") from None
    found: dict[str, str] = {}
    for key, value in pairs:
        if key in found:
            raise bad_request(f"the query names {key!r} twice")
        found[key] = value
    return found


def filename(params: dict[str, str]) -> str:
    """The ``filename`` parameter: one safe path component with an accepted suffix."""
    name = params.get("filename")
    if not name:
        raise bad_request("the filename query parameter is required (?filename=model.gguf)")
    if not is_safe_filename(name) or upload_format(name) is None:
        raise Refusal(
            "UnsupportedFormat",
            f"{name[:80]!r} is not accepted: the name must end with .gguf, .safetensors, .tar, "
            ".tar.gz, .tgz, .tar.zst or .zip",
        )
    return name


def sha256_param(params: dict[str, str]) -> str | None:
    value = params.get("sha256")
    if value is None:
        return None
    if not _SHA256.fullmatch(value):
        raise bad_request("sha256 must be 64 lowercase hexadecimal digits")
    return value


def size_header(value: str | None, name: str) -> int | None:
    """A non-negative byte count; None when the header is absent."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("-"):
        raise bad_request(f"{name} is negative: {value[:40]!r}")
    if not _DIGITS.fullmatch(value):
        raise bad_request(f"{name} is not a byte count: {value[:40]!r}")
    return int(value)


def body_length(content_length: str | None, transfer_encoding: str | None) -> int | None:
    """The body's length, or None for a chunked body; a body of neither kind is refused."""
    if transfer_encoding is not None:
        if transfer_encoding.strip().lower() != "chunked":
            raise bad_request("only the chunked transfer encoding is understood")
        if content_length is not None:
            raise bad_request("a body cannot have both Content-Length and chunked encoding")
        return None
    length = size_header(content_length, "Content-Length")
    if length is None:
        raise bad_request("a body needs Content-Length or chunked transfer encoding")
    return length


def claim(upload_offset: str | None, content_range: str | None, length: int | None) -> Claim:
    """The offset a PATCH claims, from ``Upload-Offset`` or ``Content-Range`` (or both, equal)."""
    offset = size_header(upload_offset, "Upload-Offset")
    if content_range is None:
        if offset is None:
            raise bad_request("a PATCH needs an Upload-Offset or a Content-Range header")
        return Claim(offset)
    found = _CONTENT_RANGE.fullmatch(content_range.strip())
    if found is None:
        negative = re.search(r"bytes\s*-", content_range)
        what = "a negative offset" if negative else "not bytes <first>-<last>/<total or *>"
        raise bad_request(f"Content-Range {content_range[:60]!r} is {what}")
    first, last = int(found[1]), int(found[2])
    total = None if found[3] == "*" else int(found[3])
    if last < first:
        raise bad_request(f"Content-Range ends before it starts: {content_range[:60]!r}")
    if length is not None and last - first + 1 != length:
        raise bad_request(
            f"Content-Range names {last - first + 1} bytes, the body has {length} (Content-Length)"
        )
    if total is not None and last >= total:
        raise bad_request(f"Content-Range goes past its total: {content_range[:60]!r}")
    if offset is not None and offset != first:
        raise bad_request(f"Upload-Offset {offset} and Content-Range start {first} disagree")
    return Claim(first, total)


def commit_request(data: bytes) -> CommitRequest:
    if len(data) > MAX_COMMIT_BODY:
        raise bad_request(f"the commit body is larger than {MAX_COMMIT_BODY} bytes")
    try:
        return CommitRequest.model_validate_json(data)
    except ValidationError:
        raise bad_request(
            'the commit body must be {"sha256": "<64 hex>", "size": <bytes>}'
        ) from None
