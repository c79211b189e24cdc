"""The node emulator against the real control plane: the real Job controller sees real pod
outcomes (exit codes, termination messages), pod tokens go through real RBAC, deletion kills the
process, placement follows nodeSelector, and the host's own mount namespace is left untouched.

The Job controller's pod-failure back-off (10 s, then 20 s) makes the ``backoffLimit`` Job the
slowest: it is created as soon as the emulator runs and checked last, while the others run.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.ground.controlplane import SERVICE_ACCOUNT_ISSUER, ControlPlane
from tests.ground.nodeemu import ImageSpec, NodeEmulator
from tests.ground.nodeemu_api import KubeApi
from tests.ground.nodeemu_sched import schedulable
from tests.ground.nodeemu_spec import expand

NAMESPACE = "nodeemu"
NODE = "nodeemu-node"
POOL_LABEL = "ai.deckhouse.io/test-pool"
PYTHON = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python")
IMAGE = "registry.local/nodeemu/python:3.11"  # → PYTHON -c <args[0]>
SCRIPT_IMAGE = "registry.local/nodeemu/script"  # → a #! script that runs <args[0]>
HOST_PATHS = (
    "/var/run/secrets/kubernetes.io/serviceaccount",
    "/run/secrets",
    "/dev/termination-log",
    "/workspace",
    "/var/tmp/nodeemu-probe",
    "/etc/creds",
    "/etc/settings",
    "/etc/podinfo",
    "/var/run/creds",
)
T = TypeVar("T")
JSON = dict[str, Any]


def wait_for(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def host_paths() -> dict[str, tuple[int, int, int] | None]:
    """Each pod path on the host: (inode, size, mtime) or None when it does not exist."""
    snapshot: dict[str, tuple[int, int, int] | None] = {}
    for path in HOST_PATHS:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            snapshot[path] = None
            continue
        snapshot[path] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return snapshot


@pytest.fixture(scope="module")
def host_before() -> tuple[str, dict[str, tuple[int, int, int] | None]]:
    """The host's mount table and the pod paths on the host before any pod ran."""
    return Path("/proc/self/mountinfo").read_text(), host_paths()


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> KubeApi:
    return KubeApi(control_plane.kubeconfig)


@pytest.fixture(scope="module")
def emulator(
    control_plane: ControlPlane,
    tmp_path_factory: pytest.TempPathFactory,
    host_before: tuple[str, dict[str, tuple[int, int, int] | None]],
) -> Iterator[NodeEmulator]:
    work = tmp_path_factory.mktemp("nodeemu")
    # A script entrypoint under pytest's 0700 temp dir: for a non-root user the emulator must
    # make its directories (and its interpreter's, under /root) searchable, as an image would.
    script = work / "entrypoint"
    script.write_text(f"#!{PYTHON}\nimport sys\nexec(compile(sys.argv[1], '<pod>', 'exec'))\n")
    script.chmod(0o755)
    images: dict[str, ImageSpec | list[str]] = {
        "registry.local/nodeemu/python": ImageSpec(entrypoint=(PYTHON, "-c")),
        SCRIPT_IMAGE: [str(script)],
    }
    with NodeEmulator(
        control_plane,
        work,
        images,
        node_name=NODE,
        labels={POOL_LABEL: "workers"},
        namespaces=[NAMESPACE],
        max_grace_seconds=5.0,
        # The checkout (and its venv, the images' files here) may live under /tmp, where some
        # pods of this module mount an emptyDir.
        image_paths=[Path(PYTHON).parents[2]],
    ) as node:
        yield node


def create(api: KubeApi, path: str, body: JSON) -> JSON:
    return api.request("POST", path, body=body)


@pytest.fixture(scope="module")
def namespace(api: KubeApi) -> str:
    create(api, "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    ns = f"/api/v1/namespaces/{NAMESPACE}"
    secret = {"metadata": {"name": "creds"}, "stringData": {"password": "hunter2", "user": "ai"}}
    create(api, f"{ns}/secrets", secret)
    config = {"metadata": {"name": "settings"}, "data": {"mode": "fast", "level": "3"}}
    create(api, f"{ns}/configmaps", config)
    # The API server refuses pods whose service account does not exist yet.
    wait_for(lambda: api.get(f"{ns}/serviceaccounts/default"), what="default service account")
    return NAMESPACE


def job(name: str, code: str, **spec: Any) -> JSON:
    """A Job of one python container running ``code``; ``spec`` adds Job spec fields, and
    ``pod``/``container`` entries in it extend the pod spec and the container."""
    container = {"name": "main", "image": IMAGE, "args": [textwrap.dedent(code)]}
    container.update(spec.pop("container", {}))
    pod = {"restartPolicy": "Never", "containers": [container], **spec.pop("pod", {})}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": pod}, **spec},
    }


def pod_of(name: str, code: str, **spec: Any) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "nodeemu"}},
        "spec": job(name, code, **spec)["spec"]["template"]["spec"],
    }


def jobs_path() -> str:
    return f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"


def pods_path(name: str = "") -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/pods" + (f"/{name}" if name else "")


def finished(api: KubeApi, name: str, timeout: float = 30.0) -> JSON:
    """The Job once it has a Complete or Failed condition."""

    def done() -> JSON | None:
        current = api.get(f"{jobs_path()}/{name}")
        types = {c["type"] for c in (current or {}).get("status", {}).get("conditions") or []}
        return current if types & {"Complete", "Failed"} else None

    return wait_for(done, timeout, f"job {name} finished")


def condition(obj: JSON, kind: str) -> JSON:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def conditions(pod: JSON) -> dict[str, tuple[str, str | None]]:
    return {c["type"]: (c["status"], c.get("reason")) for c in pod["status"]["conditions"]}


def job_pods(api: KubeApi, name: str) -> list[JSON]:
    listed = api.request("GET", pods_path(), query={"labelSelector": f"job-name={name}"})
    return sorted(listed["items"], key=lambda p: p["metadata"]["creationTimestamp"])


def phase_is(api: KubeApi, name: str, *phases: str) -> Callable[[], JSON | None]:
    def probe() -> JSON | None:
        pod = api.get(pods_path(name))
        return pod if pod and pod.get("status", {}).get("phase") in phases else None

    return probe


@pytest.fixture(scope="module", autouse=True)
def backoff_job(api: KubeApi, namespace: str, emulator: NodeEmulator) -> str:
    """Created first: the Job controller waits 10 s and 20 s between its three pods."""
    create(api, jobs_path(), job("retried", "raise SystemExit(1)", backoffLimit=2))
    return "retried"


ENV_AND_FILES = """
    import json, os
    files = {
        "secret": open("/etc/creds/pass").read(),
        "secret_mode": oct(os.stat("/etc/creds/pass").st_mode & 0o777),
        "config": open("/etc/settings/mode").read(),
        "labels": open("/etc/podinfo/labels").read(),
        "pod_name_file": open("/etc/podinfo/name").read(),
        "service_account": sorted(os.listdir("/var/run/secrets/kubernetes.io/serviceaccount")),
        "namespace_file": open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read(),
        "ca_is_cluster_ca": open("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt").read()
        == os.environ["CLUSTER_CA"],
    }
    open("/workspace/out", "w").write("written")
    files["workspace"] = open("/workspace/out").read()
    names = ["POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE", "ACCOUNT", "POD_IP", "APP",
             "GREETING", "PASSWORD", "MODE", "MISSING", "SETTING_level", "SETTING_mode",
             "CREDS_user", "CREDS_password",
             "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "HOSTNAME", "HOME"]
    print(json.dumps({"env": {n: os.environ.get(n) for n in names}, "files": files}))
"""


def test_job_completes_and_the_process_sees_env_and_mounted_files(
    api: KubeApi, namespace: str, emulator: NodeEmulator, control_plane: ControlPlane
) -> None:
    def field(path: str) -> JSON:
        return {"fieldRef": {"fieldPath": path}}

    env = [
        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
        {"name": "POD_UID", "valueFrom": field("metadata.uid")},
        {"name": "NODE", "valueFrom": field("spec.nodeName")},
        {"name": "ACCOUNT", "valueFrom": field("spec.serviceAccountName")},
        {"name": "POD_IP", "valueFrom": field("status.podIP")},
        {"name": "APP", "valueFrom": field("metadata.labels['app']")},
        {"name": "GREETING", "value": "hello $(POD_NAME) $$(POD_NAME)"},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {
            "name": "MISSING",
            "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": True}},
        },
        {"name": "CLUSTER_CA", "value": control_plane.ca_cert.read_text()},
    ]
    volumes = [
        {
            "name": "creds",
            "secret": {"secretName": "creds", "items": [{"key": "password", "path": "pass"}]},
        },
        {"name": "settings", "configMap": {"name": "settings"}},
        {
            "name": "podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                ]
            },
        },
        {
            "name": "workspace",
            "ephemeral": {
                "volumeClaimTemplate": {
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    }
                }
            },
        },
    ]
    mounts = [
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "settings", "mountPath": "/etc/settings"},
        {"name": "podinfo", "mountPath": "/etc/podinfo"},
        {"name": "workspace", "mountPath": "/workspace"},
    ]
    manifest = job(
        "env-and-files",
        ENV_AND_FILES,
        pod={"volumes": volumes, "nodeSelector": {POOL_LABEL: "workers"}},
        container={
            "env": env,
            "envFrom": [
                {"configMapRef": {"name": "settings"}, "prefix": "SETTING_"},
                {"secretRef": {"name": "creds"}, "prefix": "CREDS_"},
            ],
            "volumeMounts": mounts,
        },
    )
    manifest["spec"]["template"]["metadata"] = {"labels": {"app": "env-and-files"}}
    create(api, jobs_path(), manifest)

    done = finished(api, "env-and-files")
    assert condition(done, "Complete")["status"] == "True"
    [pod] = job_pods(api, "env-and-files")
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    assert pod["spec"]["nodeName"] == NODE
    assert pod["status"]["phase"] == "Succeeded"
    assert (pod["status"]["podIP"], pod["status"]["hostIP"]) == ("127.0.0.1", "127.0.0.1")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert "message" not in terminated
    assert conditions(pod) == {
        "PodScheduled": ("True", None),
        "PodReadyToStartContainers": ("False", None),
        "Initialized": ("True", None),
        "ContainersReady": ("False", "PodCompleted"),
        "Ready": ("False", "PodCompleted"),
    }
    labels = pod["metadata"]["labels"]
    port = str(control_plane.url.rsplit(":", 1)[1])
    assert json.loads(emulator.logs(NAMESPACE, name)) == {
        "env": {
            "POD_NAME": name,
            "POD_NAMESPACE": NAMESPACE,
            "POD_UID": uid,
            "NODE": NODE,
            "ACCOUNT": "default",
            "POD_IP": "127.0.0.1",
            "APP": "env-and-files",
            "GREETING": f"hello {name} $(POD_NAME)",
            "PASSWORD": "hunter2",
            "MODE": "fast",
            "MISSING": None,
            "SETTING_level": "3",
            "SETTING_mode": "fast",
            "CREDS_user": "ai",
            "CREDS_password": "hunter2",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": port,
            "HOSTNAME": name,
            "HOME": "/root",
        },
        "files": {
            "secret": "hunter2",
            "secret_mode": "0o644",
            "config": "fast",
            "labels": "\n".join(f'{k}="{labels[k]}"' for k in sorted(labels)),
            "pod_name_file": name,
            "service_account": ["ca.crt", "namespace", "token"],
            "namespace_file": NAMESPACE,
            "ca_is_cluster_ca": True,
            "workspace": "written",
        },
    }


def test_exit_code_2_fails_the_job_by_pod_failure_policy_with_the_termination_message(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    report = {"reason": "InvalidWeights", "message": "model.safetensors: header too large"}
    code = f"""
        import json, sys
        open("/dev/termination-log", "w").write(json.dumps({report!r}))
        sys.exit(2)
    """
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    create(api, jobs_path(), job("permanent", code, backoffLimit=6, podFailurePolicy=policy))

    failed = condition(finished(api, "permanent"), "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "PodFailurePolicy")
    [pod] = job_pods(api, "permanent")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (2, "Error")
    assert terminated["message"] == json.dumps(report)


TOKEN_CHECK = """
    import base64, json, os
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    config.load_incluster_config()
    core = client.CoreV1Api()
    name, namespace = os.environ["POD_NAME"], os.environ["POD_NAMESPACE"]
    core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": {"nodeemu/by": "me"}}})
    try:
        core.list_namespaced_secret(namespace)
        listed = 200
    except ApiException as error:
        listed = error.status
    token = open("/var/run/secrets/kubernetes.io/serviceaccount/token").read()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    print(json.dumps({"list_secrets": listed, "sub": claims["sub"], "aud": claims["aud"],
                      "pod": claims["kubernetes.io"]["pod"]}))
"""


def test_pod_token_is_bound_to_the_pod_and_goes_through_rbac(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    ns = f"/api/v1/namespaces/{NAMESPACE}"
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}"
    create(api, f"{ns}/serviceaccounts", {"metadata": {"name": "patcher"}})
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}
    create(api, f"{rbac}/roles", {"metadata": {"name": "patch-pods"}, "rules": [rule]})
    binding = {
        "metadata": {"name": "patcher"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "patch-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "patcher", "namespace": NAMESPACE}],
    }
    create(api, f"{rbac}/rolebindings", binding)
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    manifest = pod_of(
        "token", TOKEN_CHECK, pod={"serviceAccountName": "patcher"}, container={"env": env}
    )
    create(api, pods_path(), manifest)

    pod = wait_for(phase_is(api, "token", "Succeeded", "Failed"), what="token pod ended")
    log = emulator.logs(NAMESPACE, "token")
    assert pod["status"]["phase"] == "Succeeded", log
    assert pod["metadata"]["annotations"]["nodeemu/by"] == "me"
    assert json.loads(log) == {
        "list_secrets": 403,
        "sub": f"system:serviceaccount:{NAMESPACE}:patcher",
        "aud": [SERVICE_ACCOUNT_ISSUER],
        "pod": {"name": "token", "uid": pod["metadata"]["uid"]},
    }


SECURITY = """
    import errno, json, os
    def attempt(path):
        try:
            open(path, "w").write("x")
            return "written"
        except OSError as error:
            return errno.errorcode[error.errno]
    print(json.dumps({
        "ids": [os.getuid(), os.getgid(), sorted(os.getgroups())],
        "secret": open("/var/run/creds/user").read(),
        "secret_volume": attempt("/var/run/creds/new"),
        "root_fs": attempt("/var/tmp/nodeemu-probe"),
        "tmp": attempt("/tmp/probe"),
        "termination_log": attempt("/dev/termination-log"),
    }))
"""


def test_security_context_user_groups_and_read_only_root(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    volumes = [
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440}},
        {"name": "tmp", "emptyDir": {}},
    ]
    manifest = pod_of(
        "secure",
        SECURITY,
        pod={
            "volumes": volumes,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "fsGroup": 65533,
                "supplementalGroups": [4000],
            },
        },
        container={
            "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
            "volumeMounts": [
                {"name": "creds", "mountPath": "/var/run/creds"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        },
    )
    create(api, pods_path(), manifest)

    pod = wait_for(phase_is(api, "secure", "Succeeded", "Failed"), what="secure pod ended")
    log = emulator.logs(NAMESPACE, "secure")
    assert pod["status"]["phase"] == "Succeeded", log
    assert json.loads(log) == {
        "ids": [65532, 65532, [4000, 65532, 65533]],
        "secret": "ai",
        "secret_volume": "EROFS",
        "root_fs": "EROFS",
        "tmp": "written",
        "termination_log": "written",
    }


def test_a_script_entrypoint_runs_as_a_non_root_user(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    code = "import json, os, sys; print(json.dumps([os.getuid(), os.getgid(), sys.argv[0]]))"
    manifest = pod_of(
        "script",
        code,
        pod={"securityContext": {"runAsUser": 1000, "runAsGroup": 1000}},
        container={"image": SCRIPT_IMAGE},
    )
    create(api, pods_path(), manifest)

    pod = wait_for(phase_is(api, "script", "Succeeded", "Failed"), what="script pod ended")
    log = emulator.logs(NAMESPACE, "script")
    assert pod["status"]["phase"] == "Succeeded", log
    assert json.loads(log) == [1000, 1000, str(emulator.work_dir.parent / "entrypoint")]


def test_an_entrypoint_hidden_by_a_volume_is_a_start_error(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    manifest = pod_of(
        "hidden",
        "pass",
        pod={"volumes": [{"name": "tmp", "emptyDir": {}}]},
        container={
            "image": SCRIPT_IMAGE,
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
    )
    create(api, pods_path(), manifest)

    pod = wait_for(phase_is(api, "hidden", "Succeeded", "Failed"), what="hidden pod ended")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    script = emulator.work_dir.parent / "entrypoint"
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (
        128,
        "StartError",
        f'exec: "{script}": hidden by the volume mounted at /tmp '
        "(an image's files cannot live under a mountPath)",
    )


def test_run_as_non_root_refuses_an_image_that_runs_as_root(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    manifest = pod_of("rootful", "pass", pod={"securityContext": {"runAsNonRoot": True}})
    uid = create(api, pods_path(), manifest)["metadata"]["uid"]

    def waiting() -> JSON | None:
        pod = api.get(pods_path("rootful")) or {}
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        state: JSON = statuses[0].get("state", {}).get("waiting") or {}
        return state if state.get("reason") == "CreateContainerConfigError" else None

    assert wait_for(waiting, what="rootful pod refused") == {
        "reason": "CreateContainerConfigError",
        "message": "container has runAsNonRoot and image will run as root "
        f'(pod: "rootful_{NAMESPACE}({uid})", container: main)',
    }


SLEEPER = """
    import os, signal, sys, time
    def stop(signum, frame):
        print("SIGTERM received", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print(os.getpid(), flush=True)
    time.sleep(300)
"""


def test_deleting_the_job_terminates_the_process_and_the_pod_goes(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    create(api, jobs_path(), job("sleeper", SLEEPER, pod={"terminationGracePeriodSeconds": 5}))
    [pod] = wait_for(lambda: job_pods(api, "sleeper"), what="sleeper pod created")
    name = pod["metadata"]["name"]
    running = wait_for(phase_is(api, name, "Running"), what="sleeper running")
    [status] = running["status"]["containerStatuses"]
    assert (status["ready"], status["started"], list(status["state"])) == (True, True, ["running"])
    assert conditions(running) == {
        "PodScheduled": ("True", None),
        "PodReadyToStartContainers": ("True", None),
        "Initialized": ("True", None),
        "ContainersReady": ("True", None),
        "Ready": ("True", None),
    }
    printed = wait_for(lambda: emulator.logs(NAMESPACE, name).strip(), what="sleeper pid")
    pid = emulator.process_id(NAMESPACE, name)
    assert pid is not None
    assert printed == str(pid)  # the pod's process itself: unshare and the launcher exec
    os.kill(pid, 0)  # alive

    background = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    api.request("DELETE", f"{jobs_path()}/sleeper", body=background)
    wait_for(lambda: api.get(pods_path(name)) is None, what="sleeper pod deleted")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert emulator.logs(NAMESPACE, name) == f"{pid}\nSIGTERM received\n"


STUBBORN = """
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(os.getpid(), flush=True)
    time.sleep(300)
"""


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    create(api, pods_path(), pod_of("stubborn", STUBBORN, pod={"terminationGracePeriodSeconds": 1}))
    wait_for(phase_is(api, "stubborn", "Running"), what="stubborn running")
    wait_for(lambda: emulator.logs(NAMESPACE, "stubborn").strip(), what="stubborn pid")
    pid = emulator.process_id(NAMESPACE, "stubborn")
    assert pid is not None

    started = time.monotonic()
    api.request("DELETE", pods_path("stubborn"))
    wait_for(lambda: api.get(pods_path("stubborn")) is None, what="stubborn pod deleted")
    assert time.monotonic() - started >= 1.0  # SIGTERM was ignored: SIGKILL after the grace
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert emulator.logs(NAMESPACE, "stubborn") == f"{pid}\n"


FLAKY = """
    import os, sys
    runs = len(os.listdir("/data")) + 1
    open(f"/data/run-{runs}", "w").close()
    print(f"run {runs}", flush=True)
    sys.exit(0 if runs == 2 else 1)
"""


def test_restart_policy_on_failure_restarts_the_container_keeping_its_empty_dir(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    manifest = pod_of(
        "flaky",
        FLAKY,
        pod={"restartPolicy": "OnFailure", "volumes": [{"name": "data", "emptyDir": {}}]},
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    )
    create(api, pods_path(), manifest)

    pod = wait_for(phase_is(api, "flaky", "Succeeded", "Failed"), what="flaky pod ended")
    [status] = pod["status"]["containerStatuses"]
    assert (pod["status"]["phase"], status["restartCount"]) == ("Succeeded", 1)
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["terminated"]["exitCode"] == 0
    assert emulator.logs(NAMESPACE, "flaky") == "run 1\nrun 2\n"


def test_a_pod_whose_node_selector_does_not_match_stays_unbound(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    create(api, pods_path(), pod_of("elsewhere", "pass", pod={"nodeSelector": {POOL_LABEL: "gpu"}}))
    create(api, pods_path(), pod_of("here", "pass", pod={"nodeSelector": {POOL_LABEL: "workers"}}))
    # "here" was created after "elsewhere": once it is bound, "elsewhere" has been considered.
    here = wait_for(lambda: (api.get(pods_path("here")) or {}).get("spec", {}).get("nodeName"))
    assert here == NODE
    elsewhere = api.get(pods_path("elsewhere"))
    assert elsewhere is not None
    assert "nodeName" not in elsewhere["spec"]
    assert elsewhere["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_an_unknown_image_leaves_the_pod_in_image_pull_back_off(
    api: KubeApi, namespace: str, emulator: NodeEmulator
) -> None:
    manifest = pod_of("no-image", "pass", container={"image": "registry.invalid/missing:1"})
    create(api, pods_path(), manifest)

    def back_off() -> JSON | None:
        pod = api.get(pods_path("no-image")) or {}
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        state = statuses[0].get("state", {}).get("waiting", {})
        return pod if state.get("reason") == "ImagePullBackOff" else None

    pod = wait_for(back_off, what="ImagePullBackOff")
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"] == {
        "waiting": {
            "reason": "ImagePullBackOff",
            "message": 'Back-off pulling image "registry.invalid/missing:1"',
        }
    }
    with pytest.raises(LookupError):
        emulator.logs(NAMESPACE, "elsewhere")


def test_node_is_registered_ready_with_a_renewed_lease(
    api: KubeApi, emulator: NodeEmulator
) -> None:
    node = api.get(f"/api/v1/nodes/{NODE}")
    assert node is not None
    assert node["metadata"]["labels"] == {
        "kubernetes.io/hostname": NODE,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        POOL_LABEL: "workers",
    }
    assert condition(node, "Ready")["status"] == "True"
    assert node["status"]["allocatable"]["pods"] == "110"
    assert node["spec"].get("unschedulable", False) is False
    lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}")
    assert lease is not None
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseDurationSeconds"]) == (NODE, 40)


def test_a_running_pod_without_process_is_marked_failed_after_a_restart(
    api: KubeApi, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A pod bound to the node and Running, but no process of this emulator plays it: what an
    emulator finds after it restarted."""
    other_ns, node_name = "nodeemu-restart", "nodeemu-restarted"
    create(api, "/api/v1/namespaces", {"metadata": {"name": other_ns}})
    wait_for(lambda: api.get(f"/api/v1/namespaces/{other_ns}/serviceaccounts/default"))
    manifest = pod_of("orphan", "pass")
    manifest["spec"]["nodeName"] = node_name
    path = f"/api/v1/namespaces/{other_ns}/pods/orphan"
    create(api, f"/api/v1/namespaces/{other_ns}/pods", manifest)
    api.patch(f"{path}/status", {"status": {"phase": "Running"}})

    with NodeEmulator(
        control_plane, tmp_path, {}, node_name=node_name, namespaces=[other_ns]
    ) as restarted:
        reason = wait_for(lambda: (api.get(path) or {}).get("status", {}).get("reason"))
        assert restarted.node_name == node_name
    status = (api.get(path) or {})["status"]
    assert (status["phase"], reason, status["message"]) == (
        "Failed",
        "NodeEmulatorRestarted",
        "the node emulator that ran this pod stopped; its process is gone",
    )
    assert status["containerStatuses"][0]["state"] == {
        "terminated": {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
            "startedAt": None,  # metav1.Time's zero value is serialized as null
            "finishedAt": None,
        }
    }
    node = api.get(f"/api/v1/nodes/{node_name}")
    assert node is not None
    assert condition(node, "Ready")["status"] == "Unknown"


def test_backoff_limit_2_fails_the_job_after_exactly_three_pods(
    api: KubeApi, emulator: NodeEmulator, backoff_job: str
) -> None:
    failed = condition(finished(api, backoff_job, timeout=60.0), "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    pods = job_pods(api, backoff_job)
    exits = [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods]
    assert exits == [1, 1, 1]
    assert [p["status"]["phase"] for p in pods] == ["Failed", "Failed", "Failed"]


def test_the_host_mount_namespace_is_untouched(
    host_before: tuple[str, dict[str, tuple[int, int, int] | None]], emulator: NodeEmulator
) -> None:
    """Every mount of the pods happened in their own namespaces: the host's mount table is
    the same, and no pod path was created or written on the host."""
    mounts, paths = host_before
    assert Path("/proc/self/mountinfo").read_text() == mounts
    assert host_paths() == paths


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(A)-$(B)", "1-two"),
        ("$$(A) $(MISSING) $(A", "$(A) $(MISSING) $(A"),
        ("cost: $5 $", "cost: $5 $"),
    ],
)
def test_expansion_follows_kubernetes(text: str, expanded: str) -> None:
    assert expand(text, {"A": "1", "B": "two"}) == expanded


AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            ]
        }
    }
}
TAINT = {"key": "dedicated", "value": "ai", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("node", "labels", "taints", "spec", "bound"),
    [
        ("n1", {}, [], {"affinity": AFFINITY}, True),  # by matchFields
        ("n2", {"pool": "gpu"}, [], {"affinity": AFFINITY}, True),  # by matchExpressions
        ("n2", {"pool": "cpu"}, [], {"affinity": AFFINITY}, False),
        ("n1", {}, [TAINT], {}, False),
        ("n1", {}, [TAINT], {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}, True),
        ("n1", {}, [TAINT], {"tolerations": [{"key": "dedicated", "value": "x"}]}, False),
        ("n1", {}, [], {"schedulerName": "other"}, False),
        ("n1", {}, [], {"schedulingGates": [{"name": "wait"}]}, False),
    ],
)
def test_scheduling_filters(
    node: str, labels: dict[str, str], taints: list[JSON], spec: JSON, bound: bool
) -> None:
    pod = {"metadata": {"name": "p"}, "spec": spec, "status": {"phase": "Pending"}}
    assert schedulable(pod, node, labels, taints) is bound
