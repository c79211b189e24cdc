"""What the emulated kubelet reports through ``pods/status``: pure builders of container states,
pod conditions and the termination message, shaped like the kubelet's so that the Job
controller (``backoffLimit``, ``podFailurePolicy`` ``onExitCodes`` and ``onPodConditions``) and
the project's controller read real-looking pod outcomes.

Statuses are sent as strategic merge patches: ``conditions`` merge by ``type`` (the binding's
``PodScheduled`` stays), ``containerStatuses`` by ``name``; a container ``state`` names its
other two members as ``null`` so that a patch from ``running`` to ``terminated`` removes
``running``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
HOST_IP = "127.0.0.1"
MAX_MESSAGE_BYTES = 4096  # the kubelet's cap on one container's termination message
FALLBACK_LOG_LINES = 80  # FallbackToLogsOnError: the log's tail, as the kubelet bounds it
FALLBACK_LOG_BYTES = 2048


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(kind: str, value: JSON) -> JSON:
    state: JSON = {"waiting": None, "running": None, "terminated": None}
    state[kind] = value
    return state


def container_status(
    container: JSON, kind: str, value: JSON, container_id: str = "", restarts: int = 0
) -> JSON:
    """A ``containerStatuses`` entry whose state is ``kind`` (waiting/running/terminated)."""
    status: JSON = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": f"emulated://{container.get('image', '')}" if container_id else "",
        "ready": kind == "running",
        "started": kind == "running",
        "restartCount": restarts,
        "state": _state(kind, value),
    }
    if container_id:
        status["containerID"] = container_id
    return status


def waiting(reason: str, message: str = "") -> JSON:
    return {"reason": reason, "message": message or None}  # null clears an earlier message


def terminated(exit_code: int, reason: str, message: str, started: str, finished: str) -> JSON:
    value: JSON = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started,
        "finishedAt": finished,
    }
    if message:
        value["message"] = message
    return value


def exit_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def termination_message(path: Path, policy: str, exit_code: int, log: Path) -> str:
    """The container's ``terminated.message``: the termination-message file bounded to 4096
    bytes, or with ``FallbackToLogsOnError`` and a failure, the log's tail."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_MESSAGE_BYTES)
    except OSError:
        data = b""
    if not data and policy == "FallbackToLogsOnError" and exit_code != 0:
        try:
            lines = log.read_bytes().splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
        except OSError:
            lines = []
        data = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return data.decode(errors="replace")


class Conditions:
    """The pod conditions the kubelet reports, with transition times kept while unchanged.
    ``PodScheduled`` keeps the time the binding gave it (the kubelet adds it when missing, as
    for a pod created with ``spec.nodeName``)."""

    def __init__(self, pod: JSON) -> None:
        existing = pod.get("status", {}).get("conditions") or []
        scheduled: JSON = next((c for c in existing if c.get("type") == "PodScheduled"), {})
        since = scheduled.get("lastTransitionTime") or now()
        self._seen: dict[str, tuple[str, str]] = {"PodScheduled": ("True", since)}

    def build(self, started: bool, ready: bool, reason: str = "", message: str = "") -> list[JSON]:
        wanted = {
            "PodScheduled": (True, "", ""),
            "PodReadyToStartContainers": (started, "", ""),
            "Initialized": (True, "", ""),
            "ContainersReady": (ready, reason, message),
            "Ready": (ready, reason, message),
        }
        result: list[JSON] = []
        for kind, (ok, why, text) in wanted.items():
            value = "True" if ok else "False"
            previous = self._seen.get(kind)
            since = previous[1] if previous and previous[0] == value else now()
            self._seen[kind] = (value, since)
            # A strategic merge keeps fields a patch leaves out: null clears an old reason.
            condition: JSON = {
                "type": kind,
                "status": value,
                "lastTransitionTime": since,
                "reason": why or None,
                "message": text or None,
            }
            result.append(condition)
        return result


def not_ready(container: JSON, terminal: bool) -> tuple[str, str]:
    if terminal:
        return "PodCompleted", ""
    return "ContainersNotReady", f"containers with unready status: [{container['name']}]"


def pod_status(phase: str, conditions: list[JSON], container: JSON, start_time: str) -> JSON:
    """The body of a ``pods/status`` patch."""
    return {
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [container],
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": HOST_IP,
            "podIPs": [{"ip": HOST_IP}],
            "startTime": start_time,
        }
    }


def disruption(reason: str, message: str) -> JSON:
    """The ``DisruptionTarget`` condition the kubelet adds when it ends a pod itself."""
    return {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
    }
