"""The preparation Job builder against golden files (regenerate: UPDATE_GOLDEN=1 pytest …)."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from api import protocol
from controller import jobs
from controller.config import Config, parse_config
from controller.errors import JobRenderFailed
from controller.jobs import JOB_TEMPLATE, JobRequest, build_job, json_literal

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[3]
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
        request(
            token_secret=f"prepare-{UID}-source-token",
            retry="2",
            mount_from=("ai-models/model/team-b/minilm", "ai-models/clustermodel/minilm"),
        ),
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


def test_every_variable_of_the_job_is_one_the_protocol_names() -> None:
    everything = parse_config(
        {**PLACEMENT, "registry": {**PLACEMENT["registry"], "insecure": True}}
    )
    req, _ = CASES["model-private-placement"]
    req = dataclasses.replace(req, max_expanded_bytes=800 << 30, grant_secret="job-catalog-grant")
    env = build_job(req, everything)["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert set(names) == protocol.JOB_ENV
    values = {e["name"]: e.get("value") for e in env}
    assert values[protocol.ENV_AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES] == "858993459200"
    defaults = build_job(request(), Config())["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"] for e in defaults} < protocol.JOB_ENV


def crd_url_pattern() -> re.Pattern[str]:
    crd = yaml.safe_load((REPO / "crds" / "ai.deckhouse.io_models.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return re.compile(
        schema["properties"]["spec"]["properties"]["source"]["properties"]["url"]["pattern"]
    )


# Characters the CRD's `.+` accepts (RE2's `.` excludes only "\n") that a YAML reader refuses
# (U+0080, U+FFFE, DEL, NUL) or reads as a line break folded into a space (U+0085, U+2028/9).
AWKWARD = ["\u0080", "\u0085", "\ufffe", "\uffff", "\u2028", "\u2029", "\t", "\r", "\x7f",
           "\x00", "\x1b", "\ufeff", "\u00a0", "é", "\U0001f600", "\U0010ffff", '"', "\\", "'",
           "#", ": ", "{", "}"]  # fmt: skip


@pytest.mark.parametrize("char", AWKWARD, ids=lambda c: f"U+{ord(c[0]):04X}")
def test_every_character_the_crd_accepts_reaches_the_job_exactly(char: str) -> None:
    url = f"https://huggingface.co/org/repo{char}x/tree/main{char}"
    assert crd_url_pattern().fullmatch(url)
    retry = f"again{char}"
    endpoint = f"https://hf-mirror.internal/{char}"
    config = parse_config({"sources": {"huggingFace": {"endpoint": endpoint}}})
    job = build_job(request(source_url=url, retry=retry), config)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["prepare", url, "--to", request().destination]
    assert {"name": "HF_ENDPOINT", "value": endpoint} in container["env"]
    assert job["metadata"]["annotations"]["ai.deckhouse.io/retry-value"] == retry


def test_all_of_unicode_in_one_url_survives_the_render() -> None:
    # Every scalar value of the BMP and every 97th above it, 16,384 to a URL (surrogates cannot
    # be in a Kubernetes string; "\n" the CRD refuses).
    codes = [*range(0x10000), *range(0x10000, 0x110000, 97), 0x10FFFF]
    chars = [chr(c) for c in codes if c != 0x0A and not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(chars), 16384):
        url = "https://huggingface.co/a/" + "".join(chars[start : start + 16384])
        job = build_job(request(source_url=url), Config())
        assert job["spec"]["template"]["spec"]["containers"][0]["args"][1] == url


def test_rendered_text_is_printable_ascii_only() -> None:
    url = "https://huggingface.co/a/b\u0085\u2028\U0001f600"
    literal = json_literal({"args": [url]})
    assert literal == '{"args": ["https://huggingface.co/a/b\\u0085\\u2028\\U0001f600"]}'


def test_a_template_that_cannot_render_is_job_render_failed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / JOB_TEMPLATE).write_text("kind: Job\nspec: {{ job.no_such_field }}\n")
    environment = jinja2.Environment(  # noqa: S701 - YAML, as in controller.jobs
        loader=jinja2.FileSystemLoader(tmp_path), undefined=jinja2.StrictUndefined
    )
    monkeypatch.setattr(jobs, "_environment", environment)
    with pytest.raises(JobRenderFailed) as caught:
        build_job(request(), Config())
    assert str(caught.value) == (
        "preparation-job.yaml.j2: UndefinedError: 'dict object' has no attribute 'no_such_field'"
    )
    assert caught.value.reason == "JobRenderFailed"
