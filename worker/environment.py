"""The registry settings and paths a worker command reads from its environment (``worker/cli.py``
lists the variables); shared by the prepare and the pull commands, importing neither side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from api import protocol
from oci.registry import RegistrySettings

TRUE = frozenset({"1", "true", "yes", "on"})


def env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def registry_options() -> dict[str, Any]:
    """The registry settings of the environment (``worker/cli.py`` lists the variables)."""
    docker_config = env_path(protocol.ENV_DOCKER_CONFIG)
    options: dict[str, Any] = {
        "insecure": os.environ.get(protocol.ENV_AI_MODELS_REGISTRY_INSECURE, "").lower() in TRUE,
        "ca_file": env_path(protocol.ENV_AI_MODELS_REGISTRY_CA),
        "auth_file": docker_config / "config.json" if docker_config else None,
    }
    attempts = os.environ.get("AI_MODELS_REGISTRY_ATTEMPTS")
    if attempts and attempts.isdigit() and int(attempts) >= 1:
        # Tries per registry request before RegistryUnavailable (default 6, ~15 s of backoff).
        options["settings"] = RegistrySettings(attempts=int(attempts))
    return options
