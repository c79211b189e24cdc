"""Session fixtures of the test ground (docs/testing.md): the real control plane, the real registry,
the real small models. Every service runs on 127.0.0.1 and is stopped at the end of the session,
also when tests fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ground.controlplane import ControlPlane, run_control_plane
from tests.ground.models import RealModels, locate_real_models
from tests.ground.registry import Registry, run_registry


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with run_control_plane(tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def real_models() -> RealModels:
    return locate_real_models()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
