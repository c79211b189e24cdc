"""The configuration: defaults are safe, an invalid file names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ConfigError, load_config, parse_config, parse_duration
from controller.naming import ObjectKey, artifact_reference, job_name, repository
from controller.slots import needs_slot


def test_defaults() -> None:
    config = parse_config({})
    assert config.system_namespace == "d8-ai-models"
    assert config.worker.max_concurrent == 2
    assert config.worker.workspace.empty_dir is not None
    assert config.registry.insecure is False
    assert config.worker.log_format == "text"
    assert config.upload.session_ttl_seconds == 86_400
    assert config.upload.size_limit_bytes == 200 * 1024**3
    assert (config.upload.external_url, config.upload.in_cluster_url) == ("", "")


def test_upload_urls_lose_a_trailing_slash() -> None:
    config = parse_config(
        {
            "upload": {
                "inClusterURL": "http://ai-models-upload-gateway.d8-ai-models.svc:8444/",
                "externalURL": "https://uploads.example.com/ai/",
                "sizeLimitBytes": 1024,
            }
        }
    )
    assert config.upload.in_cluster_url == "http://ai-models-upload-gateway.d8-ai-models.svc:8444"
    assert config.upload.external_url == "https://uploads.example.com/ai"
    assert config.upload.size_limit_bytes == 1024


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"worker": {"maxConcurrent": 0}},
            "worker.maxConcurrent: Input should be greater than or equal to 1",
        ),
        (
            {"worker": {"nodeSelector": "gpu"}},
            "worker.nodeSelector: Input should be a valid dictionary",
        ),
        ({"registry": {"hots": "x"}}, "registry.hots: Extra inputs are not permitted"),
        ({"worker": {"logFormat": "yaml"}}, "worker.logFormat: Input should be 'text' or 'json'"),
        ({"registry": {"prefix": "/abs"}}, "registry.prefix: Value error, must be a relative path"),
        ({"systemNamespace": "Bad_NS"}, "systemNamespace: String should match pattern"),
        (
            {"worker": {"workspace": {"emptyDir": {}, "ephemeral": {}}}},
            "set either emptyDir or ephemeral",
        ),
        (
            {"upload": {"inClusterURL": "gateway:8444"}},
            "upload.inClusterURL: Value error, must be an http:// or https:// URL with a host",
        ),
        (
            {"upload": {"externalURL": "https://u:p@uploads.example.com"}},
            "upload.externalURL: Value error, must have no query, fragment or credentials",
        ),
        (
            {"upload": {"sessionTTLSeconds": 10}},
            "upload.sessionTTLSeconds: Input should be greater than or equal to 60",
        ),
        ({"upload": {"ttlSeconds": 60}}, "upload.ttlSeconds: Extra inputs are not permitted"),
    ],
)
def test_invalid_configuration_names_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        parse_config(data)
    assert message in str(caught.value)


def test_load_config_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("worker: [unclosed")
    with pytest.raises(ConfigError, match="is not valid YAML/JSON"):
        load_config(bad)


def test_job_names_are_deterministic_and_label_safe() -> None:
    uid = "0b7f6c1e-2d3a-4c5b-9e8f-112233445566"
    assert job_name(uid, "") == f"prepare-{uid}"
    assert job_name(uid, "1") == job_name(uid, "1")
    assert job_name(uid, "1") != job_name(uid, "2")
    assert len(job_name(uid, "any retry value")) == 53


def test_repository_names_and_the_length_fallback() -> None:
    uid = "u-1"
    assert repository("ai-models", ObjectKey("Model", "ns", "m"), uid) == "ai-models/model/ns/m"
    assert (
        repository("ai-models", ObjectKey("ClusterModel", "", "m"), uid)
        == "ai-models/clustermodel/m"
    )
    long_name = "n" * 253
    assert (
        repository("ai-models", ObjectKey("Model", "ns", long_name), uid) == "ai-models/model/u-1"
    )
    assert (
        artifact_reference("r:5000", "p", ObjectKey("Model", "ns", "m"), uid)
        == "r:5000/p/model/ns/m:u-1"
    )


def test_objects_blocked_on_the_user_hold_no_place_in_the_slot_queue() -> None:
    def obj(reason: str | None, phase: str = "Pending") -> dict[str, object]:
        conditions = [{"type": "Ready", "status": "False", "reason": reason}] if reason else []
        return {
            "metadata": {"name": "m", "annotations": {}},
            "spec": {"source": {"url": "https://hf.co/a/b"}},
            "status": {"phase": phase, "conditions": conditions},
        }

    assert needs_slot(obj("Queued")) is True
    assert needs_slot(obj(None)) is True
    assert needs_slot(obj("AuthSecretNotFound")) is False
    assert needs_slot(obj("AuthSecretInvalid")) is False
    assert needs_slot(obj("Published", "Ready")) is False


def test_catalog_defaults_and_keys() -> None:
    config = parse_config({})
    assert (config.catalog.secrets_namespace, config.catalog.default_refresh_interval) == (
        "d8-system",
        "10m",
    )
    config = parse_config(
        {"catalog": {"secretsNamespace": "kube-public", "defaultRefreshInterval": "1h"}}
    )
    assert (config.catalog.secrets_namespace, config.catalog.default_refresh_interval) == (
        "kube-public",
        "1h",
    )
    with pytest.raises(ConfigError) as caught:
        parse_config({"catalog": {"defaultRefreshInterval": "10s"}})
    assert str(caught.value) == (
        "invalid configuration: catalog.defaultRefreshInterval: Value error, "
        "'10s' is outside 30s..168h"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("30000ms", 30.0),
        ("168h", 604_800.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'' is not a duration such as 30s, 10m or 1h"),
        ("10", "'10' is not a duration such as 30s, 10m or 1h"),
        ("1d", "'1d' is not a duration such as 30s, 10m or 1h"),
        ("10m ", "'10m ' is not a duration such as 30s, 10m or 1h"),
        ("-1m", "'-1m' is not a duration such as 30s, 10m or 1h"),
        ("29s", "'29s' is outside 30s..168h"),
        ("169h", "'169h' is outside 30s..168h"),
    ],
)
def test_parse_duration_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"duration|outside") as caught:
        parse_duration(text)
    assert str(caught.value) == message
