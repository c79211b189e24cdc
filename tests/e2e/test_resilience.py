"""Resilience end to end: the registry goes away mid-preparation, the controller is killed,
objects are deleted while Ready or while Publishing, a capped queue, a leader failover."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    SYSTEM,
    ControllerProcess,
    RestartableRegistry,
    controller_kubeconfig,
    get_json,
    wait_for,
)
from tests.e2e.helpers import (
    apply,
    get_model,
    manifest,
    model,
    namespace,
    owned,
    ready_condition,
    wait_phase,
)
from tests.ground.controlplane import ControlPlane
from tests.ground.hub import HubEmulator
from tests.ground.hub_repo import HubRepo
from tests.ground.models import RealModels
from tests.ground.nodeemu import NodeEmulator

MINILM_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"
SLOW = 8 * 1024 * 1024  # bytes/s from the Hub: the 87 MiB MiniLM takes ~11 s


@pytest.fixture
def slow_hub(hub: HubEmulator) -> Iterator[HubEmulator]:
    hub.bytes_per_second = SLOW
    yield hub
    hub.bytes_per_second = None


UNPREPARED_URL = "https://huggingface.co/e2e/minilm-never-prepared"


@pytest.fixture
def unprepared_minilm(hub: HubEmulator, real_models: RealModels) -> str:
    """The MiniLM files under a repository no other test prepares: with a Ready Model of the same
    source the worker would mount every blob from it and send nothing to stop halfway."""
    hub.add(HubRepo.from_dir("e2e/minilm-never-prepared", real_models.minilm_dir))
    return UNPREPARED_URL


def publishing_with_progress(plane: ControlPlane, name: str, ns: str | None) -> bool:
    st = get_model(plane, name, ns).get("status") or {}
    return st.get("phase") == "Publishing" and bool(st.get("progress")) and st["progress"] != "0%"


def test_registry_stopped_mid_preparation_is_retried_then_ready(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    e2e_registry: RestartableRegistry,
    slow_hub: HubEmulator,
    unprepared_minilm: str,
) -> None:
    ns = namespace(control_plane, "team-registry-down")
    apply(control_plane, model("minilm", unprepared_minilm, ns))
    wait_for(lambda: publishing_with_progress(control_plane, "minilm", ns), 120)
    e2e_registry.stop()
    try:

        def retrying() -> str:
            message = ready_condition(get_model(control_plane, "minilm", ns)).get("message", "")
            # During the Job's backoff "retrying in 10s (…)", then "retrying (…)" while it runs.
            counted = re.match(
                r"retrying( in 10s)? \(attempt 2 of 3\): RegistryUnavailable", message
            )
            return message if counted else ""

        message = wait_for(retrying, 300)  # six registry attempts with backoff, then the pod ends
        obj = get_model(control_plane, "minilm", ns)
        assert obj["status"]["phase"] == "Publishing"
        assert ready_condition(obj)["reason"] == "RegistryUnavailable"
        assert "registry" in message
    finally:
        e2e_registry.start()
        slow_hub.bytes_per_second = None
    ready = wait_phase(control_plane, "minilm", ns, "Ready", "Failed", timeout=180)
    assert ready["status"]["phase"] == "Ready"
    code, _, digest = manifest(
        e2e_registry.url, f"ai-models/model/{ns}/minilm", ready["metadata"]["uid"]
    )
    assert (code, digest) == (200, ready["status"]["artifact"]["digest"])
    events = get_json(
        control_plane,
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.uid={ready['metadata']['uid']}",
    )
    assert "Retrying" in {e["reason"] for e in events["items"]}


def test_controller_killed_mid_preparation_adopts_the_job(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    slow_hub: HubEmulator,
) -> None:
    ns = namespace(control_plane, "team-restart")
    apply(control_plane, model("minilm", MINILM_URL, ns))
    wait_for(lambda: publishing_with_progress(control_plane, "minilm", ns), 120)
    uid = get_model(control_plane, "minilm", ns)["metadata"]["uid"]
    controller.kill()
    time.sleep(1)
    controller.start()
    slow_hub.bytes_per_second = None
    ready = wait_phase(control_plane, "minilm", ns, "Ready", "Failed", timeout=180)
    assert ready["status"]["phase"] == "Ready"
    assert [j["metadata"]["name"] for j in owned(control_plane, "jobs", uid)] == [f"prepare-{uid}"]
    assert len(owned(control_plane, "pods", uid)) == 1


def test_delete_ready_model_removes_the_artifact(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    e2e_registry: RestartableRegistry,
) -> None:
    ns = namespace(control_plane, "team-delete")
    apply(control_plane, model("minilm", MINILM_URL, ns))
    ready = wait_phase(control_plane, "minilm", ns, "Ready", "Failed")
    uid, digest = ready["metadata"]["uid"], ready["status"]["artifact"]["digest"]
    repository = f"ai-models/model/{ns}/minilm"
    assert manifest(e2e_registry.url, repository, digest)[0] == 200
    deleted = control_plane.kubectl_run("delete", "model", "minilm", "-n", ns, "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr
    assert get_model(control_plane, "minilm", ns) == {}
    assert manifest(e2e_registry.url, repository, digest)[0] == 404
    assert manifest(e2e_registry.url, repository, uid)[0] == 404
    wait_for(
        lambda: not owned(control_plane, "jobs", uid) and not owned(control_plane, "secrets", uid),
        60,
    )


def test_delete_while_publishing_stops_the_job_and_leaves_nothing(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    e2e_registry: RestartableRegistry,
    slow_hub: HubEmulator,
) -> None:
    ns = namespace(control_plane, "team-delete-busy")
    apply(control_plane, model("minilm", MINILM_URL, ns))
    wait_for(lambda: publishing_with_progress(control_plane, "minilm", ns), 120)
    uid = get_model(control_plane, "minilm", ns)["metadata"]["uid"]
    pod = owned(control_plane, "pods", uid)[0]["metadata"]["name"]
    pid = node.process_id(SYSTEM, pod)
    assert pid is not None
    deleted = control_plane.kubectl_run("delete", "model", "minilm", "-n", ns, "--timeout=90s")
    assert deleted.returncode == 0, deleted.stderr
    assert get_model(control_plane, "minilm", ns) == {}
    assert not Path(f"/proc/{pid}").exists()
    wait_for(
        lambda: not owned(control_plane, "jobs", uid) and not owned(control_plane, "pods", uid), 60
    )
    assert owned(control_plane, "secrets", uid) == []
    assert manifest(e2e_registry.url, f"ai-models/model/{ns}/minilm", uid)[0] == 404


def _interval(pod: dict[str, object]) -> tuple[dt.datetime, dt.datetime]:
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]  # type: ignore[index]
    parse = dt.datetime.fromisoformat
    return parse(state["startedAt"].replace("Z", "+00:00")), parse(
        state["finishedAt"].replace("Z", "+00:00")
    )


def test_concurrency_cap_of_one_runs_one_job_at_a_time(
    control_plane: ControlPlane, controller: ControllerProcess, node: NodeEmulator
) -> None:
    targets = [
        ("small-a", namespace(control_plane, "cap-a")),
        ("small-b", namespace(control_plane, "cap-b")),
        ("cap-cluster-a", None),
        ("cap-cluster-b", None),
    ]
    for name, ns in targets:
        apply(control_plane, model(name, MINILM_URL, ns))
    queued_seen = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        objs = [get_model(control_plane, name, ns) for name, ns in targets]
        reasons = [ready_condition(o).get("reason") for o in objs]
        queued_seen = queued_seen or "Queued" in reasons
        active = [
            j
            for j in get_json(control_plane, "jobs", "-n", SYSTEM).get("items", [])
            if j.get("status", {}).get("active")
        ]
        assert len(active) <= 1, [j["metadata"]["name"] for j in active]
        if all((o.get("status") or {}).get("phase") == "Ready" for o in objs):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("not all Ready")
    assert queued_seen
    intervals = sorted(
        _interval(
            owned(control_plane, "pods", get_model(control_plane, name, ns)["metadata"]["uid"])[0]
        )
        for name, ns in targets
    )
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end


def test_leader_failover(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    tmp_path: Path,
) -> None:
    standby = ControllerProcess(
        controller.config, controller_kubeconfig(control_plane, tmp_path), tmp_path / "standby"
    )
    standby.start()
    try:
        lease = lambda: get_json(control_plane, "lease", "ai-models-controller", "-n", SYSTEM)  # noqa: E731
        holder = lease()["spec"]["holderIdentity"]
        assert holder.startswith("controller-primary")
        time.sleep(2)
        assert lease()["spec"]["holderIdentity"] == holder  # the standby waits
        controller.kill()
        wait_for(lambda: lease()["spec"]["holderIdentity"].startswith("controller-standby"), 30)
        ns = namespace(control_plane, "team-failover")
        apply(control_plane, model("minilm", MINILM_URL, ns))
        assert (
            wait_phase(control_plane, "minilm", ns, "Ready", "Failed")["status"]["phase"] == "Ready"
        )
    finally:
        standby.stop()
        controller.start()


def test_registry_down_delays_deletion_with_a_message_and_blocks_nobody_else(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    e2e_registry: RestartableRegistry,
) -> None:
    ns = namespace(control_plane, "team-delete-later")
    apply(control_plane, model("minilm", MINILM_URL, ns))
    ready = wait_phase(control_plane, "minilm", ns, "Ready", "Failed")
    digest = ready["status"]["artifact"]["digest"]
    e2e_registry.stop()
    try:
        control_plane.kubectl_run("delete", "model", "minilm", "-n", ns, "--wait=false")

        def waiting() -> str:
            cond = ready_condition(get_model(control_plane, "minilm", ns))
            message = str(cond.get("message", ""))
            return (
                message
                if message.startswith("waiting for the registry to delete the artifact")
                else ""
            )

        wait_for(waiting, 60)
        assert get_model(control_plane, "minilm", ns)["status"]["phase"] == "Deleting"
        # Another object is reconciled meanwhile: a catalog Model gets its waiting status.
        other = namespace(control_plane, "team-unblocked")
        apply(
            control_plane,
            {
                "apiVersion": "ai.deckhouse.io/v1alpha1",
                "kind": "Model",
                "metadata": {"name": "catalog", "namespace": other},
                "spec": {"source": {"catalog": {"name": "q"}}},
            },
        )
        unblocked = wait_phase(control_plane, "catalog", other, "Pending", timeout=30)
        assert ready_condition(unblocked)["reason"] in (
            "CatalogSourceNotReady",
            "CatalogSourceAmbiguous",
            "CatalogEntryNotFound",
        )
    finally:
        e2e_registry.start()
    wait_for(lambda: get_model(control_plane, "minilm", ns) == {}, 90)
    assert manifest(e2e_registry.url, f"ai-models/model/{ns}/minilm", digest)[0] == 404
