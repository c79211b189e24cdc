"""One source as many Models, end to end: the controller names the repositories of Ready Models
of the same source in the Job (``AI_MODELS_MOUNT_FROM``), and the worker mounts their blobs
instead of downloading the weights again; every spelling of the URL gives one digest."""

from __future__ import annotations

from tests.e2e.conftest import ControllerProcess
from tests.e2e.helpers import apply, model, namespace, owned, wait_phase
from tests.ground.controlplane import ControlPlane
from tests.ground.hub import HubEmulator
from tests.ground.hub_repo import MINILM
from tests.ground.nodeemu import NodeEmulator

SPELLINGS = (
    f"https://huggingface.co/{MINILM}",
    f"https://hf.co/{MINILM}/tree/main/",
    f"https://www.huggingface.co/{MINILM}?revision=main",
)
COPIES = 10


def test_ten_models_of_one_source_take_the_weights_from_the_hub_once(
    control_plane: ControlPlane, controller: ControllerProcess, node: NodeEmulator,
    hub: HubEmulator,
) -> None:  # fmt: skip
    ns = namespace(control_plane, "team-shared")
    repo_bytes = sum(entry.size for entry in hub.repos[MINILM].entries.values())
    hub.clear_requests()
    apply(control_plane, model("copy-0", SPELLINGS[0], ns))
    wait_phase(control_plane, "copy-0", ns, "Ready", timeout=240)
    for i in range(1, COPIES):
        apply(control_plane, model(f"copy-{i}", SPELLINGS[i % len(SPELLINGS)], ns))
    objects = [
        wait_phase(control_plane, f"copy-{i}", ns, "Ready", "Failed", timeout=300)
        for i in range(COPIES)
    ]
    served = sum(r.body_bytes for r in hub.requests)
    print(f"{COPIES} Models: {served} bytes from the Hub; the repository has {repo_bytes}")
    assert [o["status"]["phase"] for o in objects] == ["Ready"] * COPIES
    assert len({o["status"]["artifact"]["digest"] for o in objects}) == 1
    assert served <= 1.1 * repo_bytes
    # The last Job was told where the blobs are: the Ready copies before it, at most 8.
    last = objects[-1]
    job = owned(control_plane, "jobs", last["metadata"]["uid"])[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    candidates = env["AI_MODELS_MOUNT_FROM"].split(",")
    assert len(candidates) == 8
    assert {c.rpartition("/")[0] for c in candidates} == {f"ai-models/model/{ns}"}
    assert f"ai-models/model/{ns}/copy-{COPIES - 1}" not in candidates
