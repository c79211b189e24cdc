"""End to end on the real control plane: kubectl apply → Job → worker pod → registry → Ready."""

from __future__ import annotations

import hashlib
import json
import re

from tests.e2e.conftest import SYSTEM, ControllerProcess, RestartableRegistry, get_json, wait_for
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
from tests.ground.models import RealModels
from tests.ground.nodeemu import NodeEmulator

MINILM_URL = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"


def test_hugging_face_model_goes_ready_with_what_is_in_the_registry(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    e2e_registry: RestartableRegistry,
    hub: HubEmulator,
    real_models: RealModels,
) -> None:
    ns = namespace(control_plane, "team-a")
    hub.bytes_per_second = 20 * 1024 * 1024  # ~5 s for the 87 MiB: progress can be watched
    try:
        apply(control_plane, model("minilm", MINILM_URL, ns))
        seen: set[str] = set()

        def progressed() -> bool:
            obj = get_model(control_plane, "minilm", ns)
            st = obj.get("status") or {}
            if st.get("phase") == "Publishing" and st.get("progress"):
                seen.add(st["progress"])
                assert re.fullmatch(r"\d{1,2}%", st["progress"]), st["progress"]
            return st.get("phase") == "Ready"

        wait_for(progressed, 180, every=0.2)
    finally:
        hub.bytes_per_second = None
    assert any(0 < int(p[:-1]) < 100 for p in seen), seen
    obj = get_model(control_plane, "minilm", ns)
    st = obj["status"]
    uid = obj["metadata"]["uid"]
    # The registry holds what status says: the tag is the UID, the digest is the manifest's.
    code, body, digest = manifest(e2e_registry.url, f"ai-models/model/{ns}/minilm", uid)
    assert code == 200
    assert st["artifact"]["digest"] == digest
    assert st["artifact"]["sizeBytes"] == body["config"]["size"] + sum(
        layer["size"] for layer in body["layers"]
    )
    assert st["artifact"]["mediaType"] == "application/vnd.cncf.model.manifest.v1+json"
    weights = next(
        layer
        for layer in body["layers"]
        if layer["annotations"]["org.cncf.model.filepath"] == "model.safetensors"
    )
    expected = hashlib.sha256(
        (real_models.minilm_dir / "model.safetensors").read_bytes()
    ).hexdigest()
    assert weights["digest"] == f"sha256:{expected}"
    assert st["resolved"]["architecture"] == "BertModel"
    assert st["resolved"]["format"] == "Safetensors"
    assert st["resolved"]["parameterCount"] == 22_713_728
    assert st["resolved"]["contextWindowTokens"] == 512
    assert st["source"]["resolvedType"] == "HuggingFace"
    assert (
        st["source"]["resolvedRevision"]
        == hub.repos["sentence-transformers/all-MiniLM-L6-v2"].commit
    )
    assert "progress" not in st
    assert ready_condition(obj)["reason"] == "Published"
    assert all(c["observedGeneration"] == obj["metadata"]["generation"] for c in st["conditions"])
    jobs = owned(control_plane, "jobs", uid)
    assert [j["metadata"]["name"] for j in jobs] == [f"prepare-{uid}"]
    pod = owned(control_plane, "pods", uid)[0]["metadata"]["name"]
    log = node.logs(SYSTEM, pod)
    # The worker's log is for people by default: time, level, message, key=value.
    assert re.search(
        r"^\S+Z info  published reference=\S+ digest=sha256:[0-9a-f]{64} size=\d+$", log, re.M
    ), log
    assert re.search(r"^\S+Z info  transfer( \S+)? \d+% [\d.]+/[\d.]+ MiB", log, re.M), log
    assert re.search(
        r"^\S+Z info  result on stdout digest=sha256:[0-9a-f]{64} size=\d+$", log, re.M
    ), log
    events = get_json(
        control_plane, "events", "-n", ns, "--field-selector", f"involvedObject.uid={uid}"
    )
    assert {e["reason"] for e in events["items"]} >= {"PreparationStarted", "Published"}


def test_ollama_model_goes_ready(
    control_plane: ControlPlane,
    controller: ControllerProcess,
    node: NodeEmulator,
    ollama_model: object,
) -> None:
    ns = namespace(control_plane, "team-b")
    apply(control_plane, model("smollm2", "https://ollama.com/library/smollm2:135m", ns))
    obj = wait_phase(control_plane, "smollm2", ns, "Ready", "Failed")
    assert obj["status"]["phase"] == "Ready", json.dumps(obj["status"])
    resolved = obj["status"]["resolved"]
    assert (
        resolved["architecture"],
        resolved["format"],
        resolved["quantization"],
        resolved["contextWindowTokens"],
    ) == ("llama", "GGUF", "Q4_1", 8192)
    assert resolved["parameterCount"] == 134_515_008
    assert obj["status"]["source"]["resolvedType"] == "Ollama"
    assert obj["status"]["source"]["resolvedRevision"].startswith("sha256:")
