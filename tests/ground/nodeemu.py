"""The node emulator: the kubelet (and the scheduler) of the end-to-end tests.

The local control plane runs no kubelet and no scheduler. ``NodeEmulator`` registers a ``Node``,
binds pending pods to it through ``pods/binding``, runs each bound pod's container as a local
process and reports real outcomes through ``pods/status``, so the real Job controller applies
``backoffLimit`` and ``podFailurePolicy`` to real exit codes and termination messages::

    with NodeEmulator(plane, tmp_path, {"ai-models-worker": [".venv/bin/ai-models-worker"]}):
        ...  # create Jobs; read emulator.logs(namespace, pod) instead of `kubectl logs`

Design (controller-runtime's shape, in threads):

- *watch* — lists then watches pods cluster-wide into a cache, re-lists with back-off after
  any error (410 Gone included); events only enqueue the pod's ``namespace/name``;
- *dispatcher* — ``_reconcile(key)`` reads the cached pod and decides: bind it (when
  ``nodeemu_sched.schedulable``), start a ``PodRunner``, ask a runner to stop (deletion), finish
  a graceful delete, or mark as lost a pod that looks started but runs no process here (it was
  run by an emulator that stopped). Failed API calls requeue the key after a delay; every key
  is also resynced every few seconds;
- *runner* (``nodeemu_runner``), one thread per pod: volumes (``nodeemu_volumes``), env and
  identity (``nodeemu_spec``), a process in a private mount namespace (``nodeemu_launcher``),
  statuses (``nodeemu_status``);
- *heartbeat* — renews the node's Lease in ``kube-node-lease`` and its Ready condition.

Images: ``images`` maps an image reference — whole, or without tag/digest — to the local argv
of its ENTRYPOINT, or to an ``ImageSpec`` (ENTRYPOINT, CMD, USER, ENV, WORKDIR). An unknown
image leaves the pod ``Pending`` in ``ErrImagePull``/``ImagePullBackOff``.

On ``close`` every process is stopped as in a graceful node shutdown (pods end ``Failed``,
reason ``Terminated``, with a ``DisruptionTarget`` condition, and are not deleted), and the Node
stays registered with its Ready condition ``Unknown``: a later emulator with the same name takes
it over. The emulator talks to the API as the admin of ``ControlPlane.kubeconfig`` (it needs
the scheduler's ``pods/binding`` right as well as the kubelet's); the processes talk as their
pods' service accounts, through real RBAC. It needs root (mount namespaces, ``setuid``).
"""

from __future__ import annotations

import contextlib
import heapq
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from tests.ground import nodeemu_status as st
from tests.ground.controlplane import ControlPlane
from tests.ground.nodeemu_api import ApiError, KubeApi, pod_path
from tests.ground.nodeemu_node import NodeObject, host_capacity
from tests.ground.nodeemu_runner import NodeContext, PodRunner, delete_now, mark_lost, was_started
from tests.ground.nodeemu_sched import schedulable
from tests.ground.nodeemu_spec import ImageSpec, normalize_images

__all__ = ["ImageSpec", "NodeEmulator"]

JSON = dict[str, Any]
Key = tuple[str, str]
WATCH_SECONDS = 240
RESYNC_SECONDS = 5.0
MIN_BACKOFF, MAX_BACKOFF = 0.2, 5.0
TERMINAL = ("Succeeded", "Failed")


class _KeyQueue:
    """Keys to reconcile: an event's key once until it is taken, retries due later."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Key, bool]] = []
        self._immediate: set[Key] = set()
        self._count = 0
        self._ready = threading.Condition()

    def add(self, key: Key, after: float = 0.0) -> None:
        with self._ready:
            if after == 0.0:
                if key in self._immediate:
                    return
                self._immediate.add(key)
            self._count += 1
            heapq.heappush(self._due, (time.monotonic() + after, self._count, key, after == 0.0))
            self._ready.notify()

    def get(self, timeout: float) -> Key | None:
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    _, _, key, immediate = heapq.heappop(self._due)
                    if immediate:
                        self._immediate.discard(key)
                    return key
                if now >= deadline:
                    return None
                next_due = self._due[0][0] if self._due else deadline
                self._ready.wait(min(deadline, next_due) - now)


def _service_env(port: int) -> dict[str, str]:
    """The ``kubernetes`` service's variables the kubelet gives every container: the API
    server's real address, so that in-cluster clients (``load_incluster_config``) work."""
    return {
        "KUBERNETES_SERVICE_HOST": st.HOST_IP,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{st.HOST_IP}:{port}",
    }


class NodeEmulator:
    """A kubelet stand-in for one emulated node; use it as a context manager."""

    def __init__(
        self,
        plane: ControlPlane,
        work_dir: Path,
        images: Mapping[str, Sequence[str] | ImageSpec],
        node_name: str = "emulated-node",
        labels: Mapping[str, str] | None = None,
        taints: Sequence[JSON] = (),
        namespaces: Sequence[str] | None = None,
        max_grace_seconds: float = 10.0,
        heartbeat_seconds: float = 10.0,
        image_paths: Sequence[Path] = (),
        kubelet_port: int = 0,
    ) -> None:
        """``images``: image reference (whole, or without tag/digest) → the local argv of its
        ENTRYPOINT, or an ``ImageSpec``. ``work_dir``: pods' directories go to
        ``work_dir/<node_name>/pods/<uid>/`` (volumes, ``container.log``). ``labels`` and
        ``taints`` are the Node's (the ``kubernetes.io/hostname``, ``os`` and ``arch`` labels are
        added); ``namespaces`` limits the pods handled (all when None); ``max_grace_seconds``
        caps a pod's termination grace period; ``image_paths``: host directories holding the
        images' files (the checkout, its venv), kept visible under volumes mounted over them;
        ``kubelet_port``: where a ``nodeemu_logs.KubeletLogServer`` serves ``kubectl logs`` for
        this node (0: nothing does)."""
        if os.geteuid() != 0:
            raise RuntimeError("the node emulator needs root: it mounts in private namespaces")
        unshare = shutil.which("unshare")
        if unshare is None:
            raise RuntimeError("the node emulator needs unshare(1) from util-linux")
        self.node_name = node_name
        self.labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **(labels or {}),
        }
        self.taints = list(taints)
        self.work_dir = work_dir / node_name
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._namespaces = set(namespaces) if namespaces is not None else None
        self._heartbeat_seconds = heartbeat_seconds
        self._api = KubeApi(plane.kubeconfig)
        capacity = host_capacity(self.work_dir)
        self._node_object = NodeObject(
            self._api, node_name, self.labels, self.taints, capacity, kubelet_port
        )
        self._node = NodeContext(
            api=self._api,
            node_name=node_name,
            images=normalize_images(images),
            work_dir=self.work_dir,
            service_env=_service_env(urlsplit(plane.url).port or 443),
            allocatable=capacity,
            max_grace=max_grace_seconds,
            # A private mount namespace per process; unshare and the launcher exec, not fork.
            launcher_argv=(
                unshare,
                "--mount",
                "--propagation",
                "private",
                "--",
                sys.executable,
                "-I",
                "-S",
                str(Path(__file__).with_name("nodeemu_launcher.py")),
            ),
            image_paths=tuple(str(p) for p in image_paths),
        )
        self._cache: dict[Key, JSON] = {}
        self._runners: dict[str, PodRunner] = {}  # by pod UID: every pod run here, ever
        self._latest: dict[Key, PodRunner] = {}  # by namespace/name: the last run, for logs
        self._lock = threading.Lock()
        self._queue = _KeyQueue()
        self._closing = threading.Event()
        self._synced = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- public ------------------------------------------------------------------------------

    def __enter__(self) -> NodeEmulator:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, timeout: float = 30.0) -> None:
        """Registers the node and returns once the pods of the cluster have been listed."""
        self._node_object.register()
        for name, loop in (
            ("watch", self._watch_loop),
            ("dispatch", self._dispatch_loop),
            ("heartbeat", self._heartbeat_loop),
        ):
            thread = threading.Thread(target=loop, name=f"{self.node_name}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self._synced.wait(timeout):
            self.close()
            raise RuntimeError(f"node emulator {self.node_name}: no pod list in {timeout}s")

    def close(self) -> None:
        """Stops every process (graceful node shutdown), the threads, and marks the node
        NotReady; the Node object stays."""
        self._closing.set()
        self._api.close()
        with self._lock:
            runners = [r for r in self._runners.values() if r.is_alive()]
        for runner in runners:
            runner.request_stop(self._node.max_grace, "shutdown")
        for runner in runners:
            runner.join(self._node.max_grace + 40.0)
        for thread in self._threads:
            thread.join(10.0)
        # The control plane may be gone first; the node is only test state then.
        with contextlib.suppress(ApiError):
            self._node_object.mark_stopped()

    def logs(self, namespace: str, pod: str) -> str:
        """The output (stdout and stderr) of the pod's container: ``kubectl logs``'s stand-in.
        Kept after the pod is gone; raises ``LookupError`` for a pod that never ran here."""
        return self._runner(namespace, pod).log_path.read_text(errors="replace")

    def container_log(self, namespace: str, pod: str) -> tuple[Path, bool]:
        """The pod's log file and whether its container may still write to it (the kubelet
        log endpoint's lookup); ``LookupError`` for a pod that never ran here."""
        runner = self._runner(namespace, pod)
        return runner.log_path, runner.is_alive()

    def process_id(self, namespace: str, pod: str) -> int | None:
        """The PID of the pod's container process (the last one), None before it started."""
        return self._runner(namespace, pod).pid

    def _log_error(self, where: str) -> None:
        """Emulator bugs go to ``<work_dir>/emulator.log``: the threads carry on."""
        with (self.work_dir / "emulator.log").open("a") as log:
            log.write(f"{st.now()} {where}:\n{traceback.format_exc()}\n")

    def _runner(self, namespace: str, pod: str) -> PodRunner:
        with self._lock:
            runner = self._latest.get((namespace, pod))
        if runner is None:
            raise LookupError(f"pod {namespace}/{pod} never ran on node {self.node_name}")
        return runner

    def _heartbeat_loop(self) -> None:
        while not self._closing.wait(self._heartbeat_seconds):
            try:
                self._node_object.heartbeat()
            except ApiError:
                continue  # the next beat retries; a Lease lasts four beats
            except Exception:  # noqa: BLE001 - the loop must outlive an emulator bug
                self._log_error("heartbeat")

    # -- pods: watch -------------------------------------------------------------------------

    def _wanted(self, pod: JSON) -> bool:
        return self._namespaces is None or pod["metadata"]["namespace"] in self._namespaces

    @staticmethod
    def _key(pod: JSON) -> Key:
        return pod["metadata"]["namespace"], pod["metadata"]["name"]

    def _relist(self) -> str:
        listed = self._api.request("GET", "/api/v1/pods")
        pods = {self._key(p): p for p in listed.get("items", []) if self._wanted(p)}
        with self._lock:
            keys = set(self._cache) | set(pods)
            self._cache = pods
        for key in keys:
            self._queue.add(key)
        self._synced.set()
        return str(listed["metadata"]["resourceVersion"])

    def _watch_loop(self) -> None:
        version: str | None = None
        delay = MIN_BACKOFF
        while not self._closing.is_set():
            try:
                if version is None:
                    version = self._relist()
                for event in self._api.watch("/api/v1/pods", version, WATCH_SECONDS):
                    pod: JSON = event["object"]
                    version = str(pod["metadata"]["resourceVersion"])
                    if event["type"] == "BOOKMARK" or not self._wanted(pod):
                        continue
                    with self._lock:
                        if event["type"] == "DELETED":
                            self._cache.pop(self._key(pod), None)
                        else:
                            self._cache[self._key(pod)] = pod
                    self._queue.add(self._key(pod))
                delay = MIN_BACKOFF
            except Exception as error:  # noqa: BLE001 - the loop must outlive an emulator bug
                # 410 Gone or anything else: a fresh list is always right (it also catches
                # deletions missed while disconnected).
                if not isinstance(error, ApiError):
                    self._log_error("watch")
                version = None
                if self._closing.wait(delay):
                    return
                delay = min(delay * 2, MAX_BACKOFF)

    # -- pods: reconcile ---------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        last_resync = time.monotonic()
        while not self._closing.is_set():
            key = self._queue.get(timeout=0.5)
            if time.monotonic() - last_resync > RESYNC_SECONDS:
                last_resync = time.monotonic()
                with self._lock:
                    keys = list(self._cache)
                for cached in keys:
                    self._queue.add(cached)
            if key is None or self._closing.is_set():
                continue
            try:
                self._reconcile(key)
            except ApiError:
                self._queue.add(key, after=1.0)
            except Exception:  # noqa: BLE001 - the loop must outlive an emulator bug
                self._log_error(f"reconcile {key[0]}/{key[1]}")
                self._queue.add(key, after=5.0)

    def _reconcile(self, key: Key) -> None:
        with self._lock:
            pod = self._cache.get(key)
            latest = self._latest.get(key)
        gone = pod is None or (latest is not None and pod["metadata"]["uid"] != latest.uid)
        if latest is not None and latest.is_alive() and gone:
            latest.request_stop(0, "gone")  # deleted for good (force) while running
        if pod is None:
            return
        spec, meta = pod["spec"], pod["metadata"]
        if not spec.get("nodeName"):
            if schedulable(pod, self.node_name, self.labels, self.taints):
                self._bind(pod)
            return
        if spec["nodeName"] != self.node_name:
            return
        deleting = meta.get("deletionTimestamp") is not None
        graceful = deleting and meta.get("deletionGracePeriodSeconds") != 0
        grace = float(meta.get("deletionGracePeriodSeconds") or 0)
        with self._lock:
            runner = self._runners.get(meta["uid"])
        if runner is not None:
            if deleting and runner.is_alive():
                runner.request_stop(grace, "delete")
            elif graceful:
                delete_now(self._api, pod)  # it ended before the delete: finish the delete
            return
        status: JSON = pod.get("status", {})
        if status.get("phase") in TERMINAL:
            if graceful:
                delete_now(self._api, pod)
            return
        if was_started(status):
            mark_lost(self._api, pod)
            if graceful:
                delete_now(self._api, pod)
            return
        runner = PodRunner(self._node, pod)
        with self._lock:
            self._runners[runner.uid] = runner
            self._latest[key] = runner
        runner.start()
        if deleting:
            runner.request_stop(grace, "delete")

    def _bind(self, pod: JSON) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self._api.request(
                "POST", pod_path(meta["namespace"], meta["name"], "binding"), body=binding
            )
        except ApiError as error:
            if error.code not in (404, 409):  # gone, or bound by someone else meanwhile
                raise
