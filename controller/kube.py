"""The controller's only door to the Kubernetes API: a small facade over the official client.

It speaks raw JSON dicts rather than the client's generated models: the controller reads a few
fields of many objects, and decoding 1,000 Models into generated classes costs more memory and
time than the reconciles themselves. The official client still provides configuration
(kubeconfig / in-cluster), TLS, authentication and connection pooling. Every failure becomes
one of the errors of ``controller.errors``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from controller.errors import ApiUnavailable, NotFound, kube_error

JSON = dict[str, Any]
LIST_PAGE_SIZE = 500


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


MODELS = Resource("ai.deckhouse.io", "v1alpha1", "models", "Model", True)
CLUSTER_MODELS = Resource("ai.deckhouse.io", "v1alpha1", "clustermodels", "ClusterModel", False)
MODEL_CATALOG_SOURCES = Resource(
    "ai.deckhouse.io", "v1alpha1", "modelcatalogsources", "ModelCatalogSource", False
)
JOBS = Resource("batch", "v1", "jobs", "Job", True)
PODS = Resource("", "v1", "pods", "Pod", True)
SECRETS = Resource("", "v1", "secrets", "Secret", True)
EVENTS = Resource("", "v1", "events", "Event", True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", True)


def model_resource(kind: str) -> Resource:
    """The resource of a Model or ClusterModel, by kind."""
    return MODELS if kind == "Model" else CLUSTER_MODELS


class KubeApi(Protocol):
    """The facade's interface: what the controller asks of the API server. ``KubeClient`` is
    the real one; unit tests use an in-memory fake with the same semantics
    (``tests/unit/controller/fakekube.py``). Every failure is an error of ``controller.errors``."""

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[JSON], str]: ...

    def watch(
        self,
        res: Resource,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[tuple[str, JSON]]: ...

    def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON | None: ...

    def create(self, res: Resource, body: JSON, namespace: str | None = None) -> JSON: ...

    def merge_patch(
        self, res: Resource, name: str, patch: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON: ...

    def replace(
        self, res: Resource, name: str, body: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON: ...

    def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        propagation: str = "Background",
    ) -> bool: ...


def load_api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """In-cluster configuration inside a pod, else the kubeconfig (explicit or default)."""
    configuration = k8s.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(configuration)
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, client_configuration=configuration
    )
    return k8s.ApiClient(configuration)


class KubeClient:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        request_timeout: float = 30.0,
        on_request: Callable[[str], None] = lambda method: None,
    ) -> None:
        self._api = api_client
        self._timeout = request_timeout
        self._on_request = on_request
        """Called with the HTTP method of every request (metrics: API requests per object)."""

    def _send(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: object = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json", "Content-Type": content_type}
        self._on_request(method)
        serialized = self._api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            return self._api.call_api(*serialized, _request_timeout=timeout or self._timeout)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiUnavailable(0, "ConnectionError", str(error)) from error
        except k8s.ApiException as error:
            raise _error_of(error.status or 0, error.body) from error

    def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        response = self._send(method, path, **kwargs)
        data = response.read()
        if not 200 <= response.status < 300:
            raise _error_of(response.status, data)
        result: JSON = json.loads(data) if data else {}
        return result

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[JSON], str]:
        """Every object (paged) and the list's resourceVersion to watch from."""
        items: list[JSON] = []
        token: str | None = None
        while True:
            query = {"labelSelector": label_selector, "limit": LIST_PAGE_SIZE, "continue": token}
            page = self.request("GET", res.path(namespace), query=query)
            items.extend(page.get("items", []))
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items, str(page["metadata"]["resourceVersion"])

    def watch(
        self,
        res: Resource,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> Iterator[tuple[str, JSON]]:
        """Events after ``resource_version`` until the server ends the watch; raises ``Gone``
        when the version expired. Bookmarks are yielded too (type ``BOOKMARK``)."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "labelSelector": label_selector,
            "timeoutSeconds": timeout_seconds,
        }
        response = self._send("GET", res.path(namespace), query=query, timeout=timeout_seconds + 30)
        if not 200 <= response.status < 300:
            raise _error_of(response.status, response.read())
        raw = response.response
        try:
            buffer = b""
            for chunk in raw.stream(64 * 1024, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _watch_event(json.loads(line))
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiUnavailable(0, "WatchInterrupted", str(error)) from error
        finally:
            raw.release_conn()

    def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON | None:
        try:
            return self.request("GET", res.path(namespace, name))
        except NotFound:
            return None

    def create(self, res: Resource, body: JSON, namespace: str | None = None) -> JSON:
        return self.request("POST", res.path(namespace), body=body)

    def merge_patch(
        self, res: Resource, name: str, patch: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        return self.request(
            "PATCH",
            res.path(namespace, name, sub),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def replace(
        self, res: Resource, name: str, body: JSON, namespace: str | None = None, sub: str = ""
    ) -> JSON:
        return self.request("PUT", res.path(namespace, name, sub), body=body)

    def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        propagation: str = "Background",
    ) -> bool:
        """Deletes; ``False`` when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self.request("DELETE", res.path(namespace, name), body=body)
        except NotFound:
            return False
        return True


def _watch_event(event: JSON) -> tuple[str, JSON]:
    kind = event.get("type", "")
    obj = event.get("object", {})
    if kind == "ERROR":
        raise kube_error(int(obj.get("code", 500)), obj.get("reason", ""), obj.get("message", ""))
    return kind, obj


def _error_of(status: int, body: object) -> Exception:
    reason, message = "", ""
    try:
        data = json.loads(body) if isinstance(body, bytes | str) and body else {}
        reason, message = data.get("reason", ""), data.get("message", "")
    except ValueError:
        message = str(body)[:500]
    return kube_error(status, reason, message)
