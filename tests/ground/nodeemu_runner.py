"""One pod on the emulated node, from bound to gone: a thread that prepares the container (env,
volumes, token), starts it as a local process in its own mount namespace and process group,
reports every state through ``pods/status``, and ends it the way the kubelet does.

Lifecycle, as the kubelet reports it::

    Pending/ContainerCreating ──► Running ──► Succeeded (exit 0) | Failed (exit ≠ 0)
          │   ErrImagePull → ImagePullBackOff (unknown image, no process)
          │   CreateContainerConfigError (missing Secret key, runAsNonRoot…)   retried
          └── ContainerCreating with a message (missing Secret volume…)       retried

A stop request comes from the emulator: ``delete`` (the pod got a ``deletionTimestamp``:
SIGTERM to the process group, the grace period capped by the emulator, SIGKILL, terminal status,
then the pod is deleted with grace period 0 as the kubelet finishes a graceful delete),
``shutdown`` (the emulator closes: the kubelet's graceful node shutdown — phase Failed, reason
``Terminated`` and a ``DisruptionTarget`` condition; the pod is not deleted) or ``gone`` (the
pod vanished from the API: kill, report nothing). With ``restartPolicy`` OnFailure or Always
the container is restarted in place after a short back-off (1 s doubling to 10 s, shorter than
the kubelet's 10 s to 5 min), counting ``restartCount``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tests.ground import nodeemu_status as st
from tests.ground.nodeemu_api import ApiError, KubeApi, object_path, pod_path
from tests.ground.nodeemu_spec import (
    ContainerConfigError,
    ImageSpec,
    argv,
    environment,
    find_image,
    home_of,
    identity,
    working_dir,
)
from tests.ground.nodeemu_volumes import Mount, VolumeError, prepare_volumes

JSON = dict[str, Any]
StopReason = Literal["delete", "shutdown", "gone"]
RETRY_SECONDS = 1.0
POLL_SECONDS = 0.1
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
LOST_MESSAGE = "The container could not be located when the pod was terminated"
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."
LOST_REASON = "NodeEmulatorRestarted"
LOST_POD_MESSAGE = "the node emulator that ran this pod stopped; its process is gone"


@dataclass(frozen=True)
class NodeContext:
    """What every pod runner shares with the emulator."""

    api: KubeApi
    node_name: str
    images: Mapping[str, ImageSpec]
    work_dir: Path
    service_env: Mapping[str, str]
    allocatable: Mapping[str, str]
    max_grace: float
    launcher_argv: tuple[str, ...]  # unshare … python -I -S nodeemu_launcher.py
    image_paths: tuple[str, ...] = ()
    """Host directories that play the images' own files (the checkout and its venv): kept
    visible at their paths even when a volume is mounted over an ancestor (a checkout under
    /tmp with an emptyDir on /tmp)."""


@dataclass(frozen=True)
class Termination:
    exit_code: int
    reason: str
    message: str
    started: str
    finished: str


def lost_container_status(container: JSON) -> JSON:
    """The status of a container that no process of this node plays any more."""
    value = st.terminated(137, "ContainerStatusUnknown", LOST_MESSAGE, "", "")
    value = {k: v for k, v in value.items() if v != ""}
    return st.container_status(container, "terminated", value)


def was_started(status: JSON) -> bool:
    """Whether a node already started this pod's container, by its reported status."""
    if status.get("phase") == "Running":
        return True
    states = [c.get("state") or {} for c in status.get("containerStatuses") or []]
    return any("running" in s or "terminated" in s for s in states)


def mark_lost(api: KubeApi, pod: JSON) -> None:
    """Fails a pod that looks started but that no process of this emulator plays: it was run
    by an emulator that stopped (after a restart, the same node name)."""
    meta, container = pod["metadata"], pod["spec"]["containers"][0]
    conditions = st.Conditions(pod).build(False, False, *st.not_ready(container, True))
    start_time = pod.get("status", {}).get("startTime") or st.now()
    body = st.pod_status("Failed", conditions, lost_container_status(container), start_time)
    body["status"].update(reason=LOST_REASON, message=LOST_POD_MESSAGE)
    api.patch(pod_path(meta["namespace"], meta["name"], "status"), body)


def delete_now(api: KubeApi, pod: JSON) -> None:
    """Grace period 0, for this very pod only (UID precondition), as the kubelet ends it."""
    meta = pod["metadata"]
    body = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": meta["uid"]},
    }
    try:
        api.request("DELETE", pod_path(meta["namespace"], meta["name"]), body=body)
    except ApiError as error:
        if error.code not in (404, 409):
            raise


class PodRunner(threading.Thread):
    def __init__(self, node: NodeContext, pod: JSON) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.node = node
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.container: JSON = pod["spec"]["containers"][0]
        self.directory: Path = node.work_dir / "pods" / self.uid
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path: Path = self.directory / "container.log"
        self.log_path.touch()
        self.pid: int | None = None
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()
        self._stop_reason: StopReason | None = None
        self._grace = 0.0
        self._conditions = st.Conditions(pod)
        self._start_time = st.now()
        self._restarts = 0
        self._last_state: JSON | None = None
        self._reported: object = None

    def request_stop(self, grace: float, reason: StopReason) -> None:
        """Asks the runner to end the pod; the first reason stays, the shortest grace wins."""
        grace = min(grace, self.node.max_grace)
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason, self._grace = reason, grace
            elif reason == "gone":
                self._stop_reason = reason
            self._grace = min(self._grace, grace)
        self._stop_requested.set()

    def run(self) -> None:
        try:
            last = self._run_container()
            if self._stop_reason != "gone":
                self._finish(last)
        except Exception:  # noqa: BLE001 - an emulator bug must show in the pod log, not vanish
            trace = traceback.format_exc()
            with self.log_path.open("a") as log:
                log.write(f"node emulator error:\n{trace}")
            # And end the pod, so that a test waiting for it fails now with the trace at hand.
            with contextlib.suppress(Exception):
                self._finish(Termination(128, "StartError", trace[-2048:], st.now(), st.now()))

    # -- the container -----------------------------------------------------------------------

    def _run_container(self) -> Termination | None:
        self._report_waiting("ContainerCreating")
        reference = self.container.get("image", "")
        image = find_image(self.node.images, reference)
        if image is None:
            self._report_waiting("ErrImagePull", f'image "{reference}" is not emulated')
            if not self._stop_requested.wait(RETRY_SECONDS):
                self._report_waiting("ImagePullBackOff", f'Back-off pulling image "{reference}"')
                self._stop_requested.wait()
            return None
        launch = self._prepare(image)
        if launch is None:
            return None
        while True:
            # A restart reuses the volumes (an emptyDir outlives its container) and the env.
            last = self._run_once(*launch)
            policy = self.pod["spec"].get("restartPolicy", "Always")
            again = policy == "Always" or (policy == "OnFailure" and last.exit_code != 0)
            if self._stop_requested.is_set() or not again:
                return last
            self._restarts += 1
            self._last_state = self._terminated_state(last)
            self._report_waiting("CrashLoopBackOff", "back-off restarting failed container")
            if self._stop_requested.wait(min(10.0, 2.0 ** (self._restarts - 1))):
                return last

    def _prepare(self, image: ImageSpec) -> tuple[JSON, Path] | None:
        """The launcher's spec, once env and volumes resolve; None when stopped first."""
        while not self._stop_requested.is_set():
            try:
                return self._launch_spec(image)
            except ContainerConfigError as error:
                self._report_waiting("CreateContainerConfigError", str(error))
            except (VolumeError, ApiError) as error:
                self._report_waiting("ContainerCreating", str(error))
            self._stop_requested.wait(RETRY_SECONDS)
        return None

    def _launch_spec(self, image: ImageSpec) -> tuple[JSON, Path]:
        node, pod, container = self.node, self.pod, self.container
        if len(pod["spec"]["containers"]) != 1 or pod["spec"].get("initContainers"):
            raise ContainerConfigError("the node emulator runs pods of exactly one container")
        env = environment(pod, container, image, node.service_env, self._fetch, node.allocatable)
        who = identity(pod, container, image)
        env.update(home_of(who.uid, env))
        volumes = self.directory / "volumes"
        mounts = prepare_volumes(
            pod, container, volumes, self._fetch, self._mint, node.allocatable, env
        )
        message_file = self.directory / "termination-log"
        message_file.touch()
        target = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        mounts.append(Mount(str(message_file), target, read_only=False))
        spec = {
            "argv": argv(container, image, env),
            "env": env,
            "cwd": working_dir(container, image),
            "mounts": [
                {"source": m.source, "target": m.target, "readOnly": m.read_only} for m in mounts
            ],
            "uid": who.uid,
            "gid": who.gid,
            "groups": list(who.groups),
            "noNewPrivs": who.no_new_privs,
            "readOnlyRoot": who.read_only_root,
            "scratch": str(self.directory),
            "imagePaths": list(self.node.image_paths),
        }
        return spec, message_file

    def _fetch(self, kind: str, name: str) -> JSON | None:
        return self.node.api.get(object_path(kind, self.namespace, name))

    def _mint(self, audience: str | None, expiration: int) -> str:
        """A token bound to this pod (TokenRequest), so it carries the pod-name claim."""
        account = self.pod["spec"].get("serviceAccountName", "default")
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                # Empty audiences: the API server puts its own (--api-audiences), as for a kubelet.
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.pod_name,
                    "uid": self.uid,
                },
            },
        }
        path = object_path("serviceaccounts", self.namespace, account) + "/token"
        response = self.node.api.request("POST", path, body=request)
        return str(response["status"]["token"])

    def _run_once(self, spec: JSON, message_file: Path) -> Termination:
        message_file.write_bytes(b"")  # each container instance starts with an empty message
        message_file.chmod(0o666)  # the kubelet's mode: any container user may write it
        read_end, write_end = os.pipe()
        spec_path = self.directory / "launch.json"
        spec_path.write_text(json.dumps({**spec, "errorFd": write_end}))
        spec_path.chmod(0o600)
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [*self.node.launcher_argv, str(spec_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, stopped by PID
                pass_fds=(write_end,),
                env={},
                cwd=self.directory,
            )
        os.close(write_end)
        self.pid = process.pid
        with os.fdopen(read_end, "rb") as pipe:
            start_error = pipe.read().decode(errors="replace")
        started = st.now()
        if start_error:
            process.wait()
            return Termination(128, "StartError", start_error, started, st.now())
        self._report("Running", "running", {"startedAt": started}, ready=True)
        exit_code = self._wait(process)
        policy = self.container.get("terminationMessagePolicy", "File")
        message = st.termination_message(message_file, policy, exit_code, self.log_path)
        return Termination(exit_code, st.exit_reason(exit_code), message, started, st.now())

    def _wait(self, process: subprocess.Popen[bytes]) -> int:
        while process.poll() is None:
            if self._stop_requested.wait(POLL_SECONDS):
                self._kill(process)
        # The container ends with its main process: what it left in its group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.returncode
        return code if code >= 0 else 128 - code

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._grace
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)  # _grace may shrink meanwhile (the pod vanished)
            deadline = min(deadline, time.monotonic() + self._grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    # -- status ------------------------------------------------------------------------------

    def _terminated_state(self, last: Termination) -> JSON:
        value = st.terminated(
            last.exit_code, last.reason, last.message, last.started, last.finished
        )
        return {"terminated": value}

    def _container_id(self) -> str:
        return f"emulated://{self.uid}/{self.container['name']}" if self.pid else ""

    def _body(self, phase: str, status: JSON, ready: bool, terminal: bool = False) -> JSON:
        if self._last_state is not None:
            status["lastState"] = self._last_state
        reason, message = ("", "") if ready else st.not_ready(self.container, terminal)
        conditions = self._conditions.build(not terminal, ready, reason, message)
        return st.pod_status(phase, conditions, status, self._start_time)

    def _report_waiting(self, reason: str, message: str = "") -> None:
        phase = "Running" if self._restarts else "Pending"
        self._report(phase, "waiting", st.waiting(reason, message), ready=False)

    def _report(self, phase: str, kind: str, value: JSON, ready: bool) -> None:
        """Patches the status unless it is the one reported last (retries say it again)."""
        key = (phase, kind, json.dumps(value, sort_keys=True), self._restarts)
        if key == self._reported:
            return
        status = st.container_status(
            self.container, kind, value, self._container_id(), self._restarts
        )
        if self._patch_status(self._body(phase, status, ready), must=False):
            self._reported = key

    def _patch_status(self, body: JSON, must: bool) -> bool:
        """Sends a status, retrying API errors for a while (30 s for a terminal one, which the
        Job controller must see; 5 s otherwise, a later report says it again)."""
        deadline = time.monotonic() + (30.0 if must else 5.0)
        while True:
            try:
                self.node.api.patch(pod_path(self.namespace, self.pod_name, "status"), body)
                return True
            except ApiError as error:
                if error.code == 404:
                    self.request_stop(0, "gone")
                    return False
                if time.monotonic() >= deadline:
                    if must:
                        raise
                    return False
            time.sleep(RETRY_SECONDS)

    def _finish(self, last: Termination | None) -> None:
        if last is None:
            status, phase = lost_container_status(self.container), "Failed"
        else:
            value = self._terminated_state(last)["terminated"]
            status = st.container_status(
                self.container, "terminated", value, self._container_id(), self._restarts
            )
            phase = "Succeeded" if last.exit_code == 0 else "Failed"
        body = self._body(phase, status, ready=False, terminal=True)
        if self._stop_reason == "shutdown":
            body["status"].update(phase="Failed", reason="Terminated", message=SHUTDOWN_MESSAGE)
            body["status"]["conditions"].append(
                st.disruption("TerminationByKubelet", SHUTDOWN_MESSAGE)
            )
        self._patch_status(body, must=True)
        if self._stop_reason == "delete":
            delete_now(self.node.api, self.pod)
