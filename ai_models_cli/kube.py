"""The CLI's only door to the Kubernetes API (the ``kubernetes`` client is imported here only).

The user's own kubeconfig — ``--kubeconfig``, else ``KUBECONFIG`` (a list of files, as kubectl
reads it), else ``~/.kube/config`` — or, inside a pod without one, the pod's service account.
Three reads: the Model/ClusterModel, the session Secret, and the current context's namespace.
API errors become the CLI's typed errors (404 → ``ObjectNotFound``, 401/403 → ``Forbidden``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Literal

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ai_models_cli.errors import Forbidden, KubeError, ObjectNotFound, UsageError
from api.meta import GROUP, VERSION

Kind = Literal["Model", "ClusterModel"]
PLURALS: dict[Kind, str] = {"Model": "models", "ClusterModel": "clustermodels"}
REQUEST_TIMEOUT = 30


def _kubeconfig(path: str | None) -> str | None:
    return path or os.environ.get("KUBECONFIG") or None


class Cluster:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._api = api
        self.namespace = namespace
        """The current context's namespace (``default`` when it names none)."""

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Cluster:
        configuration = client.Configuration()
        path = _kubeconfig(kubeconfig)
        default = Path("~/.kube/config").expanduser()
        namespace = "default"
        try:
            if path is None and not default.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                namespace = _pod_namespace() or namespace
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=path, context=context, client_configuration=configuration,
                    persist_config=False,
                )  # fmt: skip
                namespace = _context_namespace(path, context) or namespace
        except (ConfigException, OSError) as error:
            raise UsageError(f"no usable kubeconfig: {error}") from None
        return cls(client.ApiClient(configuration), namespace)

    def get_model(self, kind: Kind, name: str, namespace: str | None) -> dict[str, Any]:
        api = client.CustomObjectsApi(self._api)
        what = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
        try:
            if namespace is not None:
                obj = api.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURALS[kind], name,
                    _request_timeout=REQUEST_TIMEOUT,
                )  # fmt: skip
            else:
                obj = api.get_cluster_custom_object(
                    GROUP, VERSION, PLURALS[kind], name, _request_timeout=REQUEST_TIMEOUT
                )
        except ApiException as error:
            raise _api_error(error, what) from None
        except OSError as error:  # urllib3's connection errors are OSErrors
            raise KubeError(f"reading {what}: the API server is unreachable: {error}") from None
        assert isinstance(obj, dict)
        return obj

    def read_secret(self, name: str, namespace: str) -> dict[str, str]:
        """The Secret's data, decoded; it stays in memory and is never printed."""
        what = f"Secret {namespace}/{name}"
        try:
            secret = client.CoreV1Api(self._api).read_namespaced_secret(
                name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            raise _api_error(error, what) from None
        except OSError as error:
            raise KubeError(f"reading {what}: the API server is unreachable: {error}") from None
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def _api_error(error: ApiException, what: str) -> KubeError:
    if error.status == 404:
        return ObjectNotFound(f"{what} not found")
    if error.status in (401, 403):
        return Forbidden(f"reading {what}: {error.reason} (HTTP {error.status}); ask for access")
    return KubeError(f"reading {what}: HTTP {error.status} {error.reason}")


def _context_namespace(path: str | None, context: str | None) -> str | None:
    contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    found = ((chosen or {}).get("context") or {}).get("namespace")
    return str(found) if found else None


def _pod_namespace() -> str | None:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else None
