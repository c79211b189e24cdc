"""A server's registry client: credentials from the mounted file only, three attempts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oci.errors import CredentialsInvalid
from oci.server_client import server_registry_client


def test_the_environment_docker_config_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text("not json")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))

    client = server_registry_client("r.example", insecure=True, ca_file=None, auth_file=None)

    assert (client.base_url, client.settings.attempts) == ("http://r.example", 3)


def test_an_unreadable_mounted_file_is_a_credentials_error(tmp_path: Path) -> None:
    missing = tmp_path / "auth.json"

    with pytest.raises(CredentialsInvalid, match=rf"{re.escape(str(missing))} cannot be read"):
        server_registry_client("r.example", insecure=False, ca_file=None, auth_file=missing)
