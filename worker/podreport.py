"""The worker's only door to the Kubernetes API: patching its own pod's annotations.

The pod is named by the downward API (``POD_NAME``, ``POD_NAMESPACE``); the credentials are the
pod's service-account token (in-cluster configuration), whose RBAC allows exactly this. A failed
patch is logged and dropped: progress is best effort and must never fail a preparation; the
result annotation is retried a few times because the controller needs it. The variable and
annotation names are ``api/protocol.py``'s.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

import structlog

from api.protocol import ENV_POD_NAME, ENV_POD_NAMESPACE

log = structlog.get_logger("podreport")


class Annotator(Protocol):
    def patch(self, annotations: dict[str, str]) -> bool: ...


class PodAnnotator:
    def __init__(self, name: str, namespace: str) -> None:
        from kubernetes import client, config  # imported lazily: outside a pod it is not needed

        config.load_incluster_config()  # type: ignore[no-untyped-call]
        self._api = client.CoreV1Api()
        self._name = name
        self._namespace = namespace

    def patch(self, annotations: dict[str, str]) -> bool:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        body = {"metadata": {"annotations": annotations}}
        try:
            self._api.patch_namespaced_pod(self._name, self._namespace, body, _request_timeout=10)
        except (ApiException, HTTPError, OSError) as error:
            status = getattr(error, "status", None)
            log.warning("pod annotation patch failed", status=status, error=type(error).__name__)
            return False
        return True


def pod_annotator_from_env() -> Annotator | None:
    """The annotator of this pod, or ``None`` outside a pod (no ``POD_NAME``)."""
    name, namespace = os.environ.get(ENV_POD_NAME), os.environ.get(ENV_POD_NAMESPACE)
    if not name or not namespace:
        return None
    return PodAnnotator(name, namespace)


def patch_with_retries(
    annotator: Annotator, annotations: dict[str, str], attempts: int = 5
) -> bool:
    for attempt in range(attempts):
        if annotator.patch(annotations):
            return True
        time.sleep(min(0.5 * 2**attempt, 5.0))
    return False
