"""The preparation Job builder against golden files (regenerate: UPDATE_GOLDEN=1 pytest …)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import Config, parse_config
from controller.jobs import JobRequest, build_job

GOLDEN = Path(__file__).parent / "golden"
UID = "0b7f6c1e-2d3a-4c5b-9e8f-112233445566"

PLACEMENT: dict[str, Any] = {
    "systemNamespace": "d8-ai-models",
    "registry": {
        "host": "registry.example.internal:5000",
        "authSecretName": "registry-push",
        "caSecretName": "registry-ca",
    },
    "sources": {
        "caSecretName": "mirror-ca",
        "huggingFace": {"endpoint": "https://hf-mirror.internal"},
    },
    "worker": {
        "image": "registry.example.internal/ai-models/worker:0.1.0",
        "nodeSelector": {"node-role.kubernetes.io/preparation": ""},
        "tolerations": [
            {
                "key": "dedicated",
                "operator": "Equal",
                "value": "preparation",
                "effect": "NoSchedule",
            }
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}
                            ]
                        }
                    ]
                }
            }
        },
        "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        "priorityClassName": "batch-low",
        "workspace": {"ephemeral": {"storageClassName": "fast-nvme", "size": "500Gi"}},
        "backoffLimit": 5,
    },
}


def request(**overrides: Any) -> JobRequest:
    fields: dict[str, Any] = {
        "name": f"prepare-{UID}",
        "namespace": "d8-ai-models",
        "owner_kind": "Model",
        "owner_uid": UID,
        "owner_namespace": "team-a",
        "owner_name": "all-minilm-l6-v2",
        "retry": "",
        "source_url": "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
        "destination": (
            f"registry.example.internal:5000/ai-models/model/team-a/all-minilm-l6-v2:{UID}"
        ),
    }
    fields.update(overrides)
    return JobRequest(**fields)


CASES = {
    "model-defaults": (request(), Config()),
    "model-private-placement": (
        request(token_secret=f"prepare-{UID}-source-token", retry="2"),
        parse_config(PLACEMENT),
    ),
    "clustermodel": (
        request(
            owner_kind="ClusterModel",
            owner_namespace="",
            owner_name="smollm2",
            owner_reference={
                "apiVersion": "ai.deckhouse.io/v1alpha1",
                "kind": "ClusterModel",
                "name": "smollm2",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": False,
            },
        ),
        Config(),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_job_matches_golden_file(name: str) -> None:
    req, config = CASES[name]
    rendered = yaml.safe_dump(build_job(req, config), sort_keys=False)
    path = GOLDEN / f"job-{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert rendered == path.read_text()


def test_placement_values_land_exactly_in_the_pod_spec() -> None:
    req, config = CASES["model-private-placement"]
    pod = build_job(req, config)["spec"]["template"]["spec"]
    worker = PLACEMENT["worker"]
    assert pod["nodeSelector"] == worker["nodeSelector"]
    assert pod["tolerations"] == worker["tolerations"]
    assert pod["affinity"] == worker["affinity"]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["containers"][0]["resources"] == worker["resources"]


def test_hostile_source_url_stays_one_argument() -> None:
    url = 'https://huggingface.co/a/b"\n  evil: {injected: true}\n#'
    job = build_job(request(source_url=url), Config())
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "prepare",
        url,
        "--to",
        request().destination,
    ]
    assert "evil" not in job["spec"]["template"]["spec"]


def test_security_context_is_restricted() -> None:
    pod = build_job(request(), Config())["spec"]["template"]["spec"]
    container = pod["containers"][0]["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_pod_failure_policy_fails_the_job_on_exit_code_2() -> None:
    rules = build_job(request(), Config())["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "worker", "operator": "In", "values": [2]},
    }


def test_token_is_mounted_never_in_env_or_args() -> None:
    job = build_job(request(token_secret="tok-secret"), Config())
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HF_TOKEN_PATH"] == "/var/run/ai-models/source-token/token"
    assert "HF_TOKEN" not in env
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["source-token"]["secret"]["secretName"] == "tok-secret"
