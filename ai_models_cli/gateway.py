"""The upload gateway's HTTP API, as the CLI calls it (docs/upload.md, ``api/upload.py``).

One method per request. Every error answer becomes a ``GatewayError`` carrying the gateway's own
``code`` and ``message`` (``raise_for_status``); a connection that fails becomes
``GatewayUnreachable``. Retrying is the caller's decision (``ai_models_cli/upload.py``). The
token goes into the ``Authorization`` header only: never into a URL, a message or a log.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from ai_models_cli.errors import GatewayError, GatewayUnreachable
from api.upload import (
    COMMIT_PATH,
    HEADER_UPLOAD_FILENAME,
    HEADER_UPLOAD_LENGTH,
    HEADER_UPLOAD_OFFSET,
    CommitRequest,
    CommitResult,
    ErrorBody,
)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0
"""A PATCH of 8 MiB waits for the registry to take it."""


@dataclass(frozen=True)
class UploadState:
    """``HEAD``: the upload in flight."""

    offset: int
    length: int | None
    filename: str | None


def raise_for_status(response: requests.Response) -> None:
    """The gateway's ``{code, message}`` as ``GatewayError``; a body that is not one (a proxy's
    page) keeps the HTTP status and its reason."""
    if response.status_code < 400:
        return
    try:
        body = ErrorBody.model_validate_json(response.content)
        code: str = body.code
        message = body.message
    except ValueError:
        code, message = f"HTTP{response.status_code}", response.reason or "error"
    offset = response.headers.get(HEADER_UPLOAD_OFFSET, "")
    raise GatewayError(
        response.status_code,
        code,
        message,
        retry_after=_retry_after(response),
        offset=int(offset) if offset.isdigit() else None,
    )


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _offset(response: requests.Response) -> int:
    try:
        return int(response.headers[HEADER_UPLOAD_OFFSET])
    except (KeyError, ValueError):
        raise GatewayError(
            response.status_code, "BadResponse", f"no valid {HEADER_UPLOAD_OFFSET} header"
        ) from None


class GatewayClient:
    """The session's URL (``<base>/v1/uploads/<session>``) and its bearer token."""

    def __init__(self, url: str, token: str, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = session or requests.Session()
        self._headers = {"Authorization": f"Bearer {token}"}

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        try:
            return self._http.request(
                method,
                url,
                params=params,
                data=data,
                headers={**self._headers, **(headers or {})},
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except requests.RequestException as error:
            raise GatewayUnreachable(f"{self.url}: {type(error).__name__}: {error}") from error

    def head(self) -> UploadState | None:
        """The upload in flight, None when none was started (``NoUpload``)."""
        response = self._request("HEAD", self.url)
        if response.status_code == 404:
            return None
        raise_for_status(response)
        length = response.headers.get(HEADER_UPLOAD_LENGTH)
        return UploadState(
            offset=_offset(response),
            length=int(length) if length and length.isdigit() else None,
            filename=response.headers.get(HEADER_UPLOAD_FILENAME),
        )

    def start(self, filename: str, length: int) -> int:
        """``POST``: a new resumable upload (any previous one is abandoned); its offset."""
        response = self._request(
            "POST",
            self.url,
            params={"filename": filename},
            headers={HEADER_UPLOAD_LENGTH: str(length)},
        )
        raise_for_status(response)
        return _offset(response)

    def append(self, offset: int, data: bytes) -> int:
        """``PATCH`` at ``offset``; the new offset. ``OffsetMismatch`` tells the current one."""
        response = self._request(
            "PATCH",
            self.url,
            data=data,
            headers={
                HEADER_UPLOAD_OFFSET: str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        raise_for_status(response)
        return _offset(response)

    def commit(self, sha256: str, size: int) -> CommitResult:
        response = self._request(
            "POST",
            f"{self.url}/{COMMIT_PATH}",
            data=CommitRequest(sha256=sha256, size=size).model_dump_json(),
            headers={"Content-Type": "application/json"},
        )
        raise_for_status(response)
        return CommitResult.model_validate_json(response.content)
