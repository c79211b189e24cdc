"""The node emulator's only door to the Kubernetes API: raw JSON over the official client's
connection pool.

The official client provides the kubeconfig loading, TLS and the client certificate; requests
and watches are made here on its ``urllib3`` pool so that the emulator reads and writes plain
dicts (tolerant of every field the generated models may not know) and so that a watch in
progress can be cut from another thread (``close``), which lets the emulator stop at once
instead of waiting for the server to end the watch. Every HTTP failure is an ``ApiError``
carrying the status code; connection failures are ``ApiError`` with code 0.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client import rest as k8s_rest

JSON = dict[str, Any]
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class ApiError(Exception):
    """An API request failed: ``code`` is the HTTP status, 0 when the server was not reached."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


def _error(status: int, body: bytes) -> ApiError:
    try:
        data = json.loads(body)
        return ApiError(status, str(data.get("reason", "")), str(data.get("message", "")))
    except ValueError:
        return ApiError(status, "", body[:500].decode(errors="replace"))


class KubeApi:
    def __init__(self, kubeconfig: Path, timeout: float = 15.0) -> None:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
        self.host: str = configuration.host
        self._pool: urllib3.PoolManager = k8s_rest.RESTClientObject(configuration).pool_manager
        self._headers = {"Accept": "application/json"}
        bearer = configuration.auth_settings().get("BearerToken")
        if bearer:
            self._headers["Authorization"] = str(bearer["value"])
        self._timeout = timeout
        self._watches: set[urllib3.BaseHTTPResponse] = set()
        self._lock = threading.Lock()

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: object = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        url = self.host + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        try:
            response = self._pool.request(
                method,
                url,
                body=data,
                headers=headers,
                preload_content=not stream,
                timeout=urllib3.Timeout(connect=5.0, read=timeout or self._timeout),
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, "ConnectionError", str(error)) from error
        if not 200 <= response.status < 300:
            raise _error(response.status, response.read())
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        data = self._send(method, path, **kwargs).data
        result: JSON = json.loads(data) if data else {}
        return result

    def get(self, path: str) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", path)
        except ApiError as error:
            if error.code == 404:
                return None
            raise

    def patch(self, path: str, body: JSON, content_type: str = STRATEGIC) -> JSON:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> Iterator[JSON]:
        """Watch events after ``resource_version`` until the server ends the watch or ``close``
        cuts it; an ``ERROR`` event (e.g. 410 Gone) is raised as ``ApiError``."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        response = self._send("GET", path, query=query, timeout=timeout_seconds + 15, stream=True)
        with self._lock:
            self._watches.add(response)
        try:
            buffer = b""
            for chunk in response.stream(64 * 1024):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event: JSON = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object", {})
                        raise ApiError(
                            int(status.get("code", 500)),
                            str(status.get("reason", "")),
                            str(status.get("message", "")),
                        )
                    yield event
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, "WatchInterrupted", str(error)) from error
        finally:
            with self._lock:
                self._watches.discard(response)
            response.release_conn()

    def close(self) -> None:
        """Cuts the watches in progress: their iterators end with ``ApiError`` code 0."""
        with self._lock:
            watches = list(self._watches)
        for response in watches:
            response.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread
        self._pool.clear()


def pod_path(namespace: str, name: str = "", sub: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/pods"
    if name:
        path += f"/{quote(name)}"
    if sub:
        path += f"/{sub}"
    return path


def object_path(kind: str, namespace: str, name: str) -> str:
    """Path of a namespaced core/v1 object of the given plural kind (secrets, configmaps…)."""
    return f"/api/v1/namespaces/{quote(namespace)}/{kind}/{quote(name)}"
