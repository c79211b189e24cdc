"""Kubernetes Events on Models and ClusterModels: ``PreparationStarted``, ``Retrying``,
``Published``, ``PreparationFailed``, ``Deleted``. Best effort: a failed Event never fails a
reconcile. Messages come from the controller and the worker's termination message, which never
carries credentials."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from controller.errors import KubeError
from controller.kube import EVENTS, KubeClient

log = structlog.get_logger("events")
COMPONENT = "ai-models-controller"
CLUSTER_EVENTS_NAMESPACE = "default"


class EventRecorder:
    def __init__(self, kube: KubeClient) -> None:
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
            "message": message[:1024],
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
