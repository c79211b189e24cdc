"""What a namespace user sees of one preparation, recorded by a watch (``kubectl get -w``): the
status moves only forward, every write changes something, the Job is named, retries count
attempts one way and the failing attempt's last log lines reach the Model's Events."""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.e2e.conftest import SYSTEM, ControllerProcess, get_json, wait_for
from tests.e2e.helpers import apply, model, namespace, owned, wait_phase
from tests.e2e.test_failures import token_secret
from tests.ground.controlplane import ControlPlane
from tests.ground.hub import HubEmulator
from tests.ground.hub_repo import MINILM
from tests.ground.nodeemu import NodeEmulator
from tests.integration.sources.conftest import PRIVATE, PRIVATE_TOKEN, UNAVAILABLE

# One line per watch event: resourceVersion, finalizers, phase, progress, Ready reason, message
# (kubectl's watch output goes through a tab writer: "|" separates).
RECORD = (
    "{.metadata.resourceVersion}|{.metadata.finalizers}|{.status.phase}|{.status.progress}"
    '|{.status.conditions[?(@.type=="Ready")].reason}'
    '|{.status.conditions[?(@.type=="Ready")].message}{"\\n"}'
)
PHASES = ["", "Pending", "Publishing", "Ready", "Failed"]
Line = tuple[str, ...]


@contextmanager
def watching(plane: ControlPlane, ns: str) -> Iterator[list[Line]]:
    """``kubectl get models -w`` in ``ns`` from before the object exists; the lines it printed."""
    process = subprocess.Popen(
        [str(plane.kubectl), "--kubeconfig", str(plane.kubeconfig), "get", "models", "-n", ns,
         "-w", "-o", f"jsonpath={RECORD}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    lines: list[Line] = []
    try:
        time.sleep(1.0)  # the watch is established before the object is created
        yield lines
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
        lines.extend(tuple(line.split("|", 5)) for line in out.splitlines() if line)


def percent(progress: str) -> int:
    return int(progress.rstrip("%")) if progress else -1


def test_a_watched_preparation_only_moves_forward(
    control_plane: ControlPlane, controller: ControllerProcess, node: NodeEmulator, hub: HubEmulator
) -> None:
    ns = namespace(control_plane, "team-watch")
    hub.bytes_per_second = 16 * (1 << 20)  # about 6 s for MiniLM's 87 MiB: several reports
    try:
        with watching(control_plane, ns) as lines:
            apply(control_plane, model("minilm", f"https://huggingface.co/{MINILM}", ns))
            ready = wait_phase(control_plane, "minilm", ns, "Ready", "Failed", timeout=180)
            time.sleep(1.5)  # anything written after Ready would show now
    finally:
        hub.bytes_per_second = None
    assert ready["status"]["phase"] == "Ready"
    uid = ready["metadata"]["uid"]
    job = f"Job {SYSTEM}/prepare-{uid}"
    shown = [line[1:] for line in lines]
    print("\n".join("|".join(line) for line in lines))  # the record, in the test's output
    # Every write changed something: no two lines alike.
    assert all(a != b for a, b in itertools.pairwise(shown)), shown
    # Phase and progress never go backwards; once progress shows, "starting" never comes back.
    phases = [PHASES.index(line[2]) for line in lines]
    assert phases == sorted(phases), phases
    progress = [percent(line[3]) for line in lines if line[2] == "Publishing"]
    assert progress == sorted(progress), progress
    assert len([p for p in progress if p >= 0]) >= 3, progress
    first = next(i for i, line in enumerate(lines) if line[3])
    assert not any("is starting" in line[5] for line in lines[first:]), lines[first:]
    # The Job is named while it runs.
    publishing = [line for line in lines if line[2] == "Publishing"]
    assert publishing
    assert all(line[5].endswith(f"({job})") for line in publishing), publishing
    assert lines[-1][2:5] == ("Ready", "", "Published")
    # The writes of one preparation: the finalizer, the start, one per progress report, Ready.
    modified = len(lines) - 1  # the first line is the object as created
    assert modified == 2 + len(publishing), lines
    assert "ai.deckhouse.io/retry-value" not in (ready["metadata"].get("annotations") or {})
    events = get_json(
        control_plane, "events", "-n", ns, "--field-selector", f"involvedObject.uid={uid}"
    )
    started = [e["message"] for e in events["items"] if e["reason"] == "PreparationStarted"]
    assert started == [f"preparing https://huggingface.co/{MINILM} in {job}"]


def test_retries_count_attempts_one_way_and_show_the_last_log_lines(
    control_plane: ControlPlane, controller: ControllerProcess, node: NodeEmulator, hub: HubEmulator
) -> None:
    ns = namespace(control_plane, "team-retries")
    with watching(control_plane, ns) as lines:
        apply(control_plane, model("flaky", f"https://huggingface.co/{UNAVAILABLE}", ns))
        failed = wait_phase(control_plane, "flaky", ns, "Failed", "Ready", timeout=240)
    uid = failed["metadata"]["uid"]
    job = f"prepare-{uid}"
    print("\n".join("|".join(line) for line in lines))
    assert len(owned(control_plane, "pods", uid)) == 3  # worker.backoffLimit=2 in these tests
    messages = [line[5] for line in lines]
    error = f"SourceUnavailable: {UNAVAILABLE}"
    # Every mention of an attempt counts "of 3", and the end says 3 attempts.
    counted = [m for m in messages if "attempt" in m]
    assert any(m.startswith(f"retrying in 10s (attempt 2 of 3): {error}") for m in counted)
    assert any(m.startswith(f"retrying in 20s (attempt 3 of 3): {error}") for m in counted)
    assert all("of 3)" in m or m.startswith("gave up after 3 attempts") for m in counted), counted
    assert messages[-1].startswith(f"gave up after 3 attempts; last error: {error}")
    assert lines[-1][2:5] == ("Failed", "", "PreparationFailed")
    phases = [PHASES.index(line[2]) for line in lines]
    assert phases == sorted(phases), phases

    def events() -> list[tuple[str, str]]:
        found = get_json(
            control_plane, "events", "-n", ns, "--field-selector", f"involvedObject.uid={uid}"
        )
        return [(e["reason"], e["message"]) for e in found["items"]]

    wait_for(lambda: any(r == "PreparationFailed" for r, _ in events()), 30)
    retrying = [m for r, m in events() if r == "Retrying"]
    assert len(retrying) == 2, retrying
    [failure] = [m for r, m in events() if r == "PreparationFailed"]
    head, _, tail = failure.partition(f"\nlast worker log lines of Job {SYSTEM}/{job}:\n")
    assert head.startswith(f"PreparationFailed: gave up after 3 attempts; last error: {error}")
    log = tail.splitlines()
    assert 1 <= len(log) <= 10, failure
    # The worker's own lines, timestamped, the last ones before its failure (this worker got as
    # far as inspecting; the failure itself is the message above).
    assert all(
        re.match(r"^20\d\d-\d\d-\d\dT[\d:.]+Z (info |warn |error) ", line) for line in log
    ), log
    assert log[-1].endswith(" info  inspecting"), log


def test_a_missing_auth_secret_raises_one_event_and_its_creation_is_noticed_soon(
    control_plane: ControlPlane, controller: ControllerProcess, node: NodeEmulator, hub: HubEmulator
) -> None:
    ns = namespace(control_plane, "team-late-secret")
    apply(control_plane, model("private", f"https://huggingface.co/{PRIVATE}", ns, auth="hf"))

    def events() -> list[tuple[str, str]]:
        found = get_json(control_plane, "events", "-n", ns)
        return [(e["reason"], e["message"]) for e in found["items"]]

    wait_for(lambda: any(r == "AuthSecretNotFound" for r, _ in events()), 30)
    time.sleep(8)  # rechecks at about 2, 4 and 8 s: the cause did not change, no new Event
    assert [m for r, m in events() if r == "AuthSecretNotFound"] == [
        f"Secret {ns}/hf named by spec.source.authSecretRef does not exist; create it with the "
        "Hugging Face token under the key `token`"
    ]
    created = time.monotonic()
    apply(control_plane, token_secret("hf", ns, PRIVATE_TOKEN))
    wait_phase(control_plane, "private", ns, "Publishing", "Ready", timeout=60)
    # The next recheck is at most 16 s * 1.2 away here (no Secret watch: controller.md).
    assert time.monotonic() - created < 25
