"""Docker config credentials and WWW-Authenticate parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from oci.auth import (
    BearerTokenFile,
    Challenge,
    Credentials,
    find_auth_file,
    load_credentials,
    parse_challenge,
)
from oci.errors import CredentialsInvalid


def _config(tmp_path: Path, auths: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    return path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "key", ["r.test:5000", "https://r.test:5000", "http://r.test:5000/v1/", "https://r.test:5000/"]
)
def test_base64_auth_entry_under_any_key_form(tmp_path: Path, key: str) -> None:
    path = _config(tmp_path, {key: {"auth": _b64("user:pa:ss")}})
    assert load_credentials("r.test:5000", path) == Credentials("user", "pa:ss")


def test_username_password_entry(tmp_path: Path) -> None:
    path = _config(tmp_path, {"r.test": {"username": "u", "password": "p"}})
    assert load_credentials("r.test", path) == Credentials("u", "p")


def test_no_entry_for_the_host_means_anonymous(tmp_path: Path) -> None:
    path = _config(tmp_path, {"other.test": {"auth": _b64("u:p")}})
    assert load_credentials("r.test", path) is None
    assert load_credentials("r.test", None) is None


@pytest.mark.parametrize("entry", [{"auth": "!!!"}, {"auth": _b64("nocolon")}, {"x": 1}])
def test_unusable_entry_is_an_auth_error_without_its_content(tmp_path: Path, entry: object) -> None:
    path = _config(tmp_path, {"r.test": entry})
    with pytest.raises(CredentialsInvalid, match=r"the entry for r\.test") as raised:
        load_credentials("r.test", path)
    assert "nocolon" not in str(raised.value)


def test_unreadable_file_names_the_file_only(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"auths": {"r.test": {"auth": "secret-ish"')
    with pytest.raises(CredentialsInvalid) as raised:
        load_credentials("r.test", path)
    assert raised.value.message == (
        f"registry auth file {path} is not a usable docker config JSON: not JSON (JSONDecodeError)"
    )
    with pytest.raises(CredentialsInvalid, match=r"cannot be read \(No such file or directory\)"):
        load_credentials("r.test", tmp_path / "missing.json")


def test_auth_file_search_order(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    explicit = tmp_path / "explicit.json"
    environ = {"REGISTRY_AUTH_FILE": "/run/auth.json", "DOCKER_CONFIG": str(tmp_path)}
    assert find_auth_file(explicit, environ) == explicit
    assert find_auth_file(None, environ) == Path("/run/auth.json")
    assert find_auth_file(None, {"DOCKER_CONFIG": str(tmp_path)}) == tmp_path / "config.json"
    assert find_auth_file(None, {"DOCKER_CONFIG": str(tmp_path / "none")}) is None
    assert find_auth_file(None, {}) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="registry"', Challenge("basic", {"realm": "registry"})),
        (
            'Bearer realm="https://a.test/token",service="reg",scope="repository:x/y:pull,push"',
            Challenge(
                "bearer",
                {
                    "realm": "https://a.test/token",
                    "service": "reg",
                    "scope": "repository:x/y:pull,push",
                },
            ),
        ),
        (
            "bearer realm=https://a.test/t, service=reg",
            Challenge("bearer", {"realm": "https://a.test/t", "service": "reg"}),
        ),
        ("Negotiate abc", None),
        ("", None),
    ],
)
def test_parse_challenge(header: str, expected: Challenge | None) -> None:
    assert parse_challenge(header) == expected


@pytest.mark.parametrize("content", ["", "a b", "x" * (16 << 10 + 1)])
def test_a_token_file_without_a_token_is_refused_without_its_content(
    tmp_path: Path, content: str
) -> None:
    token = tmp_path / "token"
    token.write_text(content)
    with pytest.raises(CredentialsInvalid) as error:
        BearerTokenFile(token).header()
    assert str(error.value).startswith(f"token file {token} does not hold a bearer token")
    assert repr(BearerTokenFile(token)) == f"BearerTokenFile(path={token!r})"
