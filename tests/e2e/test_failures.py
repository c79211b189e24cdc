"""Failures end to end: private sources, missing repositories, retry after a fix, and secrets
that never leak."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import SYSTEM, ControllerProcess, get_json, wait_for
from tests.e2e.helpers import apply, get_model, model, namespace, owned, ready_condition, wait_phase
from tests.ground.controlplane import ControlPlane
from tests.ground.hub import HubEmulator
from tests.ground.nodeemu import NodeEmulator
from tests.integration.sources.conftest import PRIVATE, PRIVATE_TOKEN

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
WRONG_TOKEN = "hf_wrong_token_that_must_never_leak_4242"


def token_secret(name: str, ns: str, token: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }


def everything_visible(
    plane: ControlPlane, ns: str, node: NodeEmulator, controller: ControllerProcess, uid: str
) -> str:
    """Status, events and every log a user or operator can read about the object."""
    texts = [json.dumps(get_model(plane, "private", ns))]
    texts.append(json.dumps(get_json(plane, "events", "-A")))
    texts.append(controller.output())
    for pod in owned(plane, "pods", uid):
        texts.append(node.logs(SYSTEM, pod["metadata"]["name"]))
        texts.append(json.dumps(pod))
    for job in owned(plane, "jobs", uid):
        texts.append(json.dumps(job))
    return "\n".join(texts)


def test_private_model_wrong_token_fails_then_retry_after_fix_is_ready(
    control_plane: ControlPlane, controller: ControllerProcess, node: NodeEmulator, hub: HubEmulator
) -> None:
    ns = namespace(control_plane, "team-private")
    apply(control_plane, token_secret("hf", ns, WRONG_TOKEN))
    apply(control_plane, model("private", f"https://huggingface.co/{PRIVATE}", ns, auth="hf"))
    failed = wait_phase(control_plane, "private", ns, "Failed", "Ready")
    uid = failed["metadata"]["uid"]
    assert failed["status"]["phase"] == "Failed"
    assert ready_condition(failed)["reason"] == "SourceUnauthorized"
    assert PRIVATE in ready_condition(failed)["message"]
    pods = owned(control_plane, "pods", uid)
    assert len(pods) == 1  # permanent: podFailurePolicy failed the Job at once
    visible = everything_visible(control_plane, ns, node, controller, uid)
    assert WRONG_TOKEN not in visible
    assert base64.b64encode(WRONG_TOKEN.encode()).decode() not in visible

    # Fix the cause, then ask for a new attempt.
    apply(control_plane, token_secret("hf", ns, PRIVATE_TOKEN))
    annotate = control_plane.kubectl_run(
        "annotate", "model", "private", "-n", ns, "ai.deckhouse.io/retry=1"
    )
    assert annotate.returncode == 0, annotate.stderr
    ready = wait_phase(control_plane, "private", ns, "Ready", timeout=120)
    assert ready["status"]["source"]["resolvedType"] == "HuggingFace"
    jobs = sorted(j["metadata"]["name"] for j in owned(control_plane, "jobs", uid))
    assert len(jobs) == 2  # one per attempt
    visible = everything_visible(control_plane, ns, node, controller, uid)
    assert PRIVATE_TOKEN not in visible
    assert WRONG_TOKEN not in visible


def test_missing_repository_fails_without_retries(
    control_plane: ControlPlane, controller: ControllerProcess, node: NodeEmulator
) -> None:
    ns = namespace(control_plane, "team-missing")
    apply(control_plane, model("nope", "https://huggingface.co/nobody/does-not-exist", ns))
    failed = wait_phase(control_plane, "nope", ns, "Failed", "Ready")
    cond = ready_condition(failed)
    assert failed["status"]["phase"] == "Failed"
    assert cond["reason"] in ("SourceNotFound", "SourceUnauthorized"), cond
    assert "nobody/does-not-exist" in cond["message"]
    assert len(owned(control_plane, "pods", failed["metadata"]["uid"])) == 1
    job = owned(control_plane, "jobs", failed["metadata"]["uid"])[0]
    failed_cond = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed_cond["reason"] == "PodFailurePolicy"


def test_missing_auth_secret_waits_with_a_clear_reason(
    control_plane: ControlPlane, controller: ControllerProcess
) -> None:
    ns = namespace(control_plane, "team-nosecret")
    apply(control_plane, model("private", f"https://huggingface.co/{PRIVATE}", ns, auth="absent"))

    def blocked() -> bool:
        return (
            ready_condition(get_model(control_plane, "private", ns)).get("reason")
            == "AuthSecretNotFound"
        )

    wait_for(blocked, 60)
    obj = get_model(control_plane, "private", ns)
    assert obj["status"]["phase"] == "Pending"
    assert f"Secret {ns}/absent" in ready_condition(obj)["message"]
    assert owned(control_plane, "jobs", obj["metadata"]["uid"]) == []


@pytest.mark.parametrize(
    ("sample", "name", "namespaced"),
    [
        ("model-catalog.yaml", "qwen-from-catalog", True),
        ("clustermodel-catalog.yaml", "embeddings-from-catalog", False),
    ],
)
def test_the_samples_not_prepared_yet_do_what_the_readme_says(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    sample: str,
    name: str,
    namespaced: bool,
) -> None:
    """README's table: accepted, phase Pending until a Ready source has the entry, no Job."""
    ns = namespace(control_plane, "team-samples") if namespaced else None
    where = ("-n", ns) if ns else ()
    applied = control_plane.kubectl_run("apply", *where, "-f", str(SAMPLES / sample))
    assert applied.returncode == 0, applied.stderr
    obj = wait_phase(control_plane, name, ns, "Pending", timeout=60)
    assert ready_condition(obj)["reason"] in (
        "CatalogSourceNotReady",
        "CatalogSourceAmbiguous",
        "CatalogEntryNotFound",
    )
    assert owned(control_plane, "jobs", obj["metadata"]["uid"]) == []
    assert "upload" not in obj["status"]


def test_the_upload_sample_waits_for_its_bytes_without_a_job(
    control_plane: ControlPlane, controller: ControllerProcess
) -> None:
    """docs/upload.md: a session (a Secret named in status.upload), phase WaitForUpload."""
    ns = namespace(control_plane, "team-upload")
    applied = control_plane.kubectl_run("apply", "-n", ns, "-f", str(SAMPLES / "model-upload.yaml"))
    assert applied.returncode == 0, applied.stderr
    obj = wait_phase(control_plane, "my-finetune", ns, "WaitForUpload", timeout=60)
    uid = obj["metadata"]["uid"]
    assert ready_condition(obj)["reason"] == "WaitForUpload"
    assert obj["status"]["upload"]["secretName"] == f"upload-{uid}"
    assert obj["status"]["upload"]["secretNamespace"] == ns
    assert owned(control_plane, "jobs", uid) == []
    secret = control_plane.kubectl_run("get", "secret", "-n", ns, f"upload-{uid}", "-o", "name")
    assert secret.stdout.strip() == f"secret/upload-{uid}"
