"""The worker ↔ controller protocol: the keys spelled once, the reports written by one side and
read back by the other, untrusted reports bounded, the Job's variables read by the worker."""

# ruff: noqa: E501 - exact messages read best on one line

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from api import protocol
from api.meta import API_VERSION, GROUP
from api.model import ArtifactStatus, ResolvedMetadata, SourceStatus
from api.protocol import (
    MAX_REPORT_BYTES,
    InvalidWorkerResult,
    ProgressDetail,
    WorkerResult,
    parse_percent,
    parse_progress_detail,
    parse_result,
)
from controller.workerpod import Progress, parse_progress
from worker import logs
from worker.oci import target
from worker.progress import ProgressReporter
from worker.sources.settings import SourceSettings

REPO = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGES: list[str] = PYPROJECT["tool"]["importlinter"]["root_packages"]
KEY = re.compile(re.escape(GROUP) + r"/[a-z0-9.-]+")

RESULT = WorkerResult(
    artifact=ArtifactStatus(
        kind="OCI",
        digest="sha256:" + "b" * 64,
        media_type="application/vnd.cncf.model.manifest.v1+json",
        size_bytes=1234,
    ),
    resolved=ResolvedMetadata(format="GGUF", parameter_count=134515008),
    source=SourceStatus(resolved_type="Ollama"),
)


def keys() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(protocol).items()
        if isinstance(value, str) and KEY.fullmatch(value)
    }


# ---- keys --------------------------------------------------------------------------------------


def test_every_key_is_one_distinct_value() -> None:
    found = keys()
    assert len(found) == 19
    assert len(set(found.values())) == len(found)


def test_no_module_outside_the_protocol_spells_a_key() -> None:
    """A string that is exactly a key, in any of the product's packages, is a second spelling
    (prose that mentions a key inside a longer message or docstring is fine)."""
    spelled: list[str] = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "api" / "protocol.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                    continue
                if KEY.fullmatch(node.value) and node.value != API_VERSION:
                    spelled.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value}")
    assert spelled == []


def test_the_job_template_takes_its_keys_from_the_protocol() -> None:
    template = (REPO / "templates" / "preparation-job.yaml.j2").read_text()
    assert GROUP + "/" not in template


def test_exit_codes() -> None:
    assert (protocol.SUCCESS_EXIT_CODE, protocol.PERMANENT_EXIT_CODE) == (0, 2)
    assert protocol.TRANSIENT_EXIT_CODE not in (0, 2)


def test_job_env_is_every_variable_the_protocol_names() -> None:
    named = {v for k, v in vars(protocol).items() if k.startswith("ENV_")}
    assert named == protocol.JOB_ENV
    assert len(named) == 18


# ---- the result ------------------------------------------------------------------------------


def test_the_result_annotation_is_sorted_json_in_the_status_shapes() -> None:
    assert json.loads(RESULT.to_annotation()) == {
        "artifact": {
            "digest": "sha256:" + "b" * 64,
            "kind": "OCI",
            "mediaType": "application/vnd.cncf.model.manifest.v1+json",
            "sizeBytes": 1234,
        },
        "resolved": {"format": "GGUF", "parameterCount": 134515008},
        "source": {"resolvedType": "Ollama"},
    }
    text = RESULT.to_annotation()
    assert text == json.dumps(json.loads(text), sort_keys=True)
    assert parse_result(text) == RESULT


def test_an_empty_source_status_is_an_empty_object() -> None:
    result = RESULT.model_copy(update={"source": SourceStatus()})
    assert result.to_wire()["source"] == {}
    assert parse_result(result.to_annotation()) == result


def wire(**changes: Any) -> str:
    return json.dumps({**RESULT.to_wire(), **changes})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "the worker's result is malformed at : Invalid JSON: expected ident at line 1 column 2"),
        (wire(extra=1), "the worker's result is malformed at extra: Extra inputs are not permitted"),
        (
            wire(artifact={**RESULT.to_wire()["artifact"], "sizeBytes": 0}),
            "the worker's result is malformed at artifact.sizeBytes: Input should be greater than or equal to 1",
        ),
        (
            wire(resolved={"format": "ONNX"}),
            "the worker's result is malformed at resolved.format: Input should be 'Safetensors', 'GGUF' or 'Diffusers'",
        ),
        ("x" * (MAX_REPORT_BYTES + 1), "the worker's result is 65537 bytes, over 65536"),
    ],
)  # fmt: skip
def test_a_bad_result_says_where(text: str, message: str) -> None:
    with pytest.raises(InvalidWorkerResult) as caught:
        parse_result(text)
    assert str(caught.value) == message


# ---- progress --------------------------------------------------------------------------------


def test_the_detail_annotation_leaves_unknown_fields_out() -> None:
    detail = ProgressDetail(stage="transfer", bytes_done=3, bytes_total=10, bytes_per_second=2)
    assert detail.to_annotation() == (
        '{"bytesDone": 3, "bytesPerSecond": 2, "bytesTotal": 10, "stage": "transfer"}'
    )
    assert parse_progress_detail(detail.to_annotation()) == detail


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"bytesDone": True, "bytesTotal": -1, "stage": 7, "file": ["a"]}, ProgressDetail()),
        ({"bytesDone": "5", "bytesPerSecond": "8"}, ProgressDetail()),
        ({"bytesDone": 5, "bytesTotal": 9.5, "unknown": 1}, ProgressDetail(bytes_done=5)),
        ({"bytesPerSecond": 8.5}, ProgressDetail(bytes_per_second=8.5)),
        (
            {"stage": "s" * 100, "file": "f" * 1000},
            ProgressDetail(stage="s" * 64, file="f" * 256),
        ),
    ],
)
def test_a_bad_detail_field_is_left_out_alone(value: object, expected: ProgressDetail) -> None:
    assert parse_progress_detail(json.dumps(value)) == expected


@pytest.mark.parametrize(
    "text",
    ["", "[1]", "null", "{", '{"bytesPerSecond": Infinity}', '{"bytesPerSecond": NaN}',
     json.dumps({"stage": "x" * MAX_REPORT_BYTES})],
)  # fmt: skip
def test_a_detail_that_is_no_object_or_too_large_says_nothing(text: str) -> None:
    assert parse_progress_detail(text) == ProgressDetail()


@pytest.mark.parametrize(
    ("text", "percent"),
    [("37", 37), (" 100 ", 100), ("250", 100), ("0", 0), ("", None), ("abc", None),
     ("-1", None), ("3.5", None), ("\u00b2", None), ("\u0663", None), ("1" * 5000, None)],
)  # fmt: skip
def test_percent(text: str, percent: int | None) -> None:
    assert parse_percent(text) == percent


# ---- the two sides ---------------------------------------------------------------------------


class Pod:
    """The worker's pod as the controller sees it: the annotations the worker patched."""

    def __init__(self) -> None:
        self.annotations: dict[str, str] = {}

    def patch(self, annotations: dict[str, str]) -> bool:
        self.annotations.update(annotations)
        return True

    def progress(self) -> Progress | None:
        return parse_progress({"metadata": {"annotations": self.annotations}})


def test_the_controller_reads_the_progress_the_worker_reports() -> None:
    pod, now = Pod(), [100.0]
    reporter = ProgressReporter(4 << 20, pod, interval=1.0, clock=lambda: now[0], tty=None)
    reporter.stage("transfer")
    reporter.file_started("model.safetensors", 4 << 20)
    now[0] = 102.0
    reporter.advance("model.safetensors", 1 << 20)
    assert pod.progress() == Progress(
        percent=25,
        stage="transfer",
        bytes_done=1 << 20,
        bytes_total=4 << 20,
        bytes_per_second=float(1 << 19),
        file="model.safetensors",
    )


def test_the_worker_reads_the_variables_the_job_sets() -> None:
    env = {
        protocol.ENV_HF_ENDPOINT: "https://hf-mirror.internal",
        protocol.ENV_OLLAMA_REGISTRY: "https://ollama-mirror.internal",
        protocol.ENV_SOURCES_CA_BUNDLE: "/var/run/ai-models/source-ca/ca.crt",
    }
    settings = SourceSettings.from_env(env)
    assert (settings.hf_endpoint, settings.ollama_registry, settings.ca_bundle) == (
        "https://hf-mirror.internal",
        "https://ollama-mirror.internal",
        "/var/run/ai-models/source-ca/ca.crt",
    )
    assert logs.log_format({protocol.ENV_AI_MODELS_LOG_FORMAT: "json"}) == "json"
    assert target.MOUNT_FROM_ENV == protocol.ENV_AI_MODELS_MOUNT_FROM
