"""The registry client against a real registry that misbehaves: TLS + htpasswd with a docker
config file, wrong credentials, injected 503 / 429 / connection resets, a dead registry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from api.model import ResolvedMetadata
from oci.registry import RegistrySettings
from tests.ground.procs import free_port
from tests.ground.token_registry import TokenRegistry
from tests.integration.oci.conftest import (
    DirectorySource,
    FaultProxy,
    SecureRegistry,
    plan_directory,
)
from tests.integration.oci.test_push import NullProgress
from tests.unit.oci.fakes import FakeClock
from worker.errors import RegistryRejected, RegistryUnauthorized, RegistryUnavailable
from worker.oci.materialize import materialize
from worker.oci.publish import PublishedArtifact, publish
from worker.oci.target import parse_destination

pytestmark = pytest.mark.integration


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    root = tmp_path / "small-model"
    root.mkdir()
    (root / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " * 4096)
    (root / "config.json").write_text('{"model_type": "bert"}')
    return root


def _publish(dest: str, root: Path, **kw: object) -> PublishedArtifact:
    target = parse_destination(dest, **kw)  # type: ignore[arg-type]
    plan = plan_directory(root, root.name)
    return publish(
        plan, DirectorySource(root), ResolvedMetadata(), target, progress=NullProgress(),
        concurrency=1,
    )  # fmt: skip


def test_push_over_tls_with_htpasswd_credentials_from_a_docker_config(
    secure_registry: SecureRegistry, small_model: Path
) -> None:
    registry = secure_registry.registry
    artifact = _publish(
        f"{registry.host}/secure/model:v1",
        small_model,
        ca_file=registry.ca_cert,
        auth_file=secure_registry.auth_file,
    )
    assert artifact.reference.startswith(f"{registry.host}/secure/model@sha256:")


def test_docker_config_is_found_through_the_environment(
    secure_registry: SecureRegistry, small_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = secure_registry.registry
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(secure_registry.auth_file))
    artifact = _publish(f"{registry.host}/secure/env:v1", small_model, ca_file=registry.ca_cert)
    assert artifact.digest.startswith("sha256:")


@pytest.mark.parametrize("credentials", ["wrong", "none"])
def test_wrong_or_missing_credentials_are_a_permanent_auth_error(
    secure_registry: SecureRegistry, small_model: Path, credentials: str
) -> None:
    registry = secure_registry.registry
    clock = FakeClock()
    auth_file = secure_registry.wrong_auth_file if credentials == "wrong" else None
    with pytest.raises(RegistryUnauthorized, match="registry answered 401") as raised:
        _publish(
            f"{registry.host}/secure/model:v1",
            small_model,
            ca_file=registry.ca_cert,
            auth_file=auth_file,
            sleep=clock.sleep,
        )
    assert raised.value.permanent
    assert "wrong-password" not in str(raised.value)
    assert clock.sleeps == []  # nothing to retry


def test_tls_without_our_ca_is_refused_at_once(
    secure_registry: SecureRegistry, small_model: Path
) -> None:
    # REQUESTS_CA_BUNDLE may be set in the environment; the client must not use it silently.
    registry = secure_registry.registry
    clock = FakeClock()
    with pytest.raises(RegistryRejected, match="TLS verification"):
        _publish(f"{registry.host}/secure/model:v1", small_model, sleep=clock.sleep)
    assert clock.sleeps == []


def test_injected_503_429_and_resets_are_retried_with_backoff(
    fault_proxy: FaultProxy, small_model: Path
) -> None:
    fault_proxy.faults = ["503", "429:3", "reset", "503", "reset"]
    clock = FakeClock()
    started = time.monotonic()
    artifact = _publish(
        f"http://{fault_proxy.host}/faults/model:v1", small_model, sleep=clock.sleep
    )
    assert artifact.digest.startswith("sha256:")
    assert clock.sleeps == [0.5, 3.0, 2.0, 4.0, 8.0]
    assert fault_proxy.seen[0] == fault_proxy.seen[5]  # the same request, until it went through
    assert time.monotonic() - started < 20


def test_too_many_faults_end_with_registry_unavailable(
    fault_proxy: FaultProxy, small_model: Path
) -> None:
    fault_proxy.faults = ["503"] * 10
    clock = FakeClock()
    with pytest.raises(RegistryUnavailable, match=r"^registry 503 after 4 attempts: HEAD "):
        _publish(
            f"http://{fault_proxy.host}/faults/model:v1",
            small_model,
            sleep=clock.sleep,
            settings=RegistrySettings(attempts=4),
        )
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_a_dead_registry_fails_after_the_configured_attempts(small_model: Path) -> None:
    clock = FakeClock()
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailable, match=r"ConnectionError after 3 attempts") as raised:
        _publish(
            f"http://{dead}/gone/model:v1",
            small_model,
            sleep=clock.sleep,
            settings=RegistrySettings(attempts=3),
        )
    assert not raised.value.permanent
    assert clock.sleeps == [0.5, 1.0]


def test_bearer_token_flow_against_a_token_auth_registry(
    token_registry: TokenRegistry, small_model: Path
) -> None:
    artifact = _publish(
        f"http://{token_registry.host}/bearer/model:v1",
        small_model,
        auth_file=token_registry.auth_file,
    )
    assert artifact.digest.startswith("sha256:")
    scopes = [p for p in token_registry.token_requests if "bearer%2Fmodel" in p]
    assert scopes
    assert all("service=ai-models-test" in p for p in scopes)
    # one token per scope, reused: not one token request per registry request
    assert len(token_registry.token_requests) <= 4
    materialized = materialize(
        f"http://{token_registry.host}/bearer/model@{artifact.digest}",
        small_model.parent / "pulled",
        auth_file=token_registry.auth_file,
    )
    assert len(materialized.files) == 2


def test_bearer_with_wrong_credentials_is_a_permanent_auth_error(
    token_registry: TokenRegistry, small_model: Path
) -> None:
    clock = FakeClock()
    with pytest.raises(RegistryUnauthorized, match="token request") as raised:
        _publish(
            f"http://{token_registry.host}/bearer/model:v1",
            small_model,
            auth_file=token_registry.wrong_auth_file,
            sleep=clock.sleep,
        )
    assert "wrong-password" not in str(raised.value)
    assert clock.sleeps == []
