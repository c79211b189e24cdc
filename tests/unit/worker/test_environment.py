"""The registry settings a worker command reads from its environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker import environment


def test_registry_options_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_MODELS_REGISTRY_INSECURE", "Yes")
    monkeypatch.setenv("AI_MODELS_REGISTRY_CA", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("AI_MODELS_REGISTRY_ATTEMPTS", "2")
    options = environment.registry_options()
    assert options.pop("settings").attempts == 2
    assert options == {
        "insecure": True,
        "ca_file": tmp_path / "ca.pem",
        "auth_file": tmp_path / "docker" / "config.json",
    }


def test_registry_options_without_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AI_MODELS_REGISTRY_INSECURE", "AI_MODELS_REGISTRY_CA", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AI_MODELS_REGISTRY_ATTEMPTS", "0")  # not a usable count: the default
    assert environment.registry_options() == {
        "insecure": False,
        "ca_file": None,
        "auth_file": None,
    }
