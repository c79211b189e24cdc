"""Kubernetes Events on Models and ClusterModels: ``PreparationStarted`` (names the Job),
``Retrying`` and ``PreparationFailed`` (with the worker's last log lines), ``Published``,
``AuthSecretNotFound``/``AuthSecretInvalid``/``AuthSecretForbidden`` (once per cause), ``Deleted``.
Best effort: a failed Event never fails a reconcile. Messages come from the controller and the
worker's termination message, which never carries credentials (and is redacted anyway)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from controller.errors import KubeError
from controller.kube import EVENTS, KubeApi

log = structlog.get_logger("events")
COMPONENT = "ai-models-controller"
CLUSTER_EVENTS_NAMESPACE = "default"
# core/v1 Events (firstTimestamp, no eventTime) have no message limit of their own; this one
# fits a failure message plus the worker's last log lines (api.logtail: 2 KiB at most).
MAX_MESSAGE = 4096


class EventRecorder:
    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    def emit(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or CLUSTER_EVENTS_NAMESPACE
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._kube.create(EVENTS, event, namespace)
        except KubeError as error:
            log.warning("event not recorded", reason=reason, error=str(error))
