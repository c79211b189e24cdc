"""Reading a registry's answers: the one table from a status to a typed error
(``raise_for_registry_status``), bounded bodies, ``Retry-After`` and ``Content-Range``.

The registry's own ``errors[].code`` wins over the bare HTTP status (a 400 with ``DENIED`` is a
refusal of the credentials, not a malformed request); every body is read bounded.
"""

from __future__ import annotations

import email.utils
import json
import re
import time

import requests

from oci.errors import Refused, Unauthorized, Unavailable

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_MAX_ERROR_BODY = 64 << 10
_READ_PIECE = 64 << 10
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def error_document(response: requests.Response) -> tuple[frozenset[str], str, str]:
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
    codes, detail, server_message = error_document(response)
    status = response.status_code
    message = f"{what}: registry answered {status}" + (f" ({detail})" if detail else "")
    if status in (401, 403) or codes & {"UNAUTHORIZED", "DENIED"}:
        raise Unauthorized(
            f"{message}; check the registry credentials (the docker config 'auths' entry for "
            "this host) and that they may push and pull this repository",
            status,
            server_message,
        )
    if status in RETRYABLE_STATUSES:
        raise Unavailable(message, status)
    raise Refused(message, status, codes)


def retry_after(response: requests.Response, cap: float) -> float | None:
    """Seconds the ``Retry-After`` header asks for (a number or an HTTP date), at most ``cap``."""
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


def read_at_most(response: requests.Response, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of the body (asking one more tells a caller it was larger)."""
    pieces: list[bytes] = []
    total = 0
    try:
        for piece in response.iter_content(min(limit, _READ_PIECE) or 1):
            pieces.append(piece)
            total += len(piece)
            if total >= limit:
                break
    except NETWORK_ERRORS as error:
        raise Unavailable(
            f"registry connection lost while reading {what}: {type(error).__name__}"
        ) from error
    return b"".join(pieces)[:limit]


def range_start(content_range: str) -> int | None:
    """The first byte a ``Content-Range: bytes <first>-<last>/<size>`` header announces."""
    match = _CONTENT_RANGE.match(content_range)
    return int(match.group(1)) if match else None
