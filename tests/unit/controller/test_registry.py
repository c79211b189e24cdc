"""The controller's facade over the shared registry client without sockets (a requests transport
that plays the registry and its token realm), and the docker config it reads its credentials
from: a malformed one stops the controller at start, naming the Secret and the host."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from controller import cli
from controller.config import Config, ConfigError
from controller.errors import RegistryError
from controller.registry import RegistryAccess, RegistryCleaner, credentials_from_docker_config
from tests.unit.oci.fakes import Answer, FakeTransport

DIGEST = "sha256:" + "a" * 64
HOST = "registry.example:5000"


class Transport(FakeTransport):
    """A registry that asks for a bearer token from ``realm``; the realm issues one to anyone
    who presents Basic credentials."""

    def __init__(self, realm: str) -> None:
        super().__init__(self.answer)
        self.realm = realm

    @property
    def seen(self) -> list[requests.PreparedRequest]:
        return self.requests

    def answer(self, request: requests.PreparedRequest) -> Answer:
        url = str(request.url)
        auth = str(request.headers.get("Authorization", ""))
        if url.startswith(self.realm):
            return 200, {}, json.dumps({"token": "t0k"}).encode()
        if auth == "Bearer t0k":
            return (
                202 if request.method == "DELETE" else 200,
                {"Docker-Content-Digest": DIGEST},
                b"",
            )
        return 401, {"WWW-Authenticate": f'Bearer realm="{self.realm}",service="registry"'}, b""


def cleaner(transport: Transport, *, insecure: bool = False, user: str | None = "pusher") -> Any:
    access = RegistryAccess(HOST, insecure, None, user, "s3cret" if user else None)
    return RegistryCleaner(access, transport)


def test_credentials_never_go_to_a_plain_http_realm_of_an_https_registry() -> None:
    transport = Transport("http://auth.example/token")
    with pytest.raises(RegistryError) as caught:
        cleaner(transport).delete("ai-models/model/a/b", DIGEST)
    assert str(caught.value) == (
        "registry registry.example:5000 names the token realm http://auth.example, which is "
        "not HTTPS; refusing to send the registry credentials there"
    )
    assert [r.url for r in transport.seen] == [
        f"https://{HOST}/v2/ai-models/model/a/b/manifests/{DIGEST}"
    ]


@pytest.mark.parametrize(
    ("realm", "insecure", "user"),
    [
        ("https://auth.example/token", False, "pusher"),  # HTTPS realm
        ("http://auth.example/token", True, "pusher"),  # the registry itself is plain HTTP
        ("http://auth.example/token", False, None),  # anonymous: nothing to leak
    ],
)
def test_token_flow_where_it_is_safe(realm: str, insecure: bool, user: str | None) -> None:
    transport = Transport(realm)
    assert cleaner(transport, insecure=insecure, user=user).delete("m/x", DIGEST) is True
    token_request = transport.seen[1]
    assert str(token_request.url).startswith(realm + "?")
    expected = "Basic " + base64.b64encode(b"pusher:s3cret").decode() if user else None
    assert token_request.headers.get("Authorization") == expected
    assert transport.seen[2].headers["Authorization"] == "Bearer t0k"


def docker_config(auths: object) -> bytes:
    return json.dumps({"auths": auths}).encode()


ENCODED = base64.b64encode(b"pusher:pa:ss").decode()


@pytest.mark.parametrize(
    "config",
    [
        docker_config({HOST: {"auth": ENCODED}}),
        docker_config({f"https://{HOST}": {"auth": ENCODED}}),
        docker_config({f"http://{HOST}/v1/": {"auth": ENCODED}}),
        docker_config(
            {"other:1": {"auth": "x"}, HOST: {"username": "pusher", "password": "pa:ss"}}
        ),
    ],
)
def test_credentials_for_the_host(config: bytes) -> None:
    assert credentials_from_docker_config(config, HOST) == ("pusher", "pa:ss")


def test_no_entry_for_the_host_is_anonymous() -> None:
    assert credentials_from_docker_config(docker_config({"other:1": {"auth": "x"}}), HOST) is None


PREFIX = "Secret d8/push key .dockerconfigjson is not a usable docker config JSON: "


@pytest.mark.parametrize(
    ("config", "why"),
    [
        (b'{"auths": {"\xff": {}}}', "not JSON (UnicodeDecodeError)"),
        (b'{"auths": ', "not JSON (JSONDecodeError)"),
        (b"[]", 'no "auths" object'),
        (b'{"auths": []}', 'no "auths" object'),
        (docker_config({HOST: "pusher"}), f"the entry for {HOST} is not an object"),
        (
            docker_config({HOST: {"auth": "%%%"}}),
            f"the entry for {HOST} has neither a base64 'auth' of user:password nor "
            "'username' and 'password'",
        ),
        (
            docker_config({HOST: {"auth": base64.b64encode(b"\xffuser:x").decode()}}),
            f"the entry for {HOST} has neither a base64 'auth' of user:password nor "
            "'username' and 'password'",
        ),
    ],
)
def test_malformed_docker_config_is_a_config_error(config: bytes, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        credentials_from_docker_config(config, HOST, "Secret d8/push key .dockerconfigjson")
    assert str(caught.value) == PREFIX + why


class SecretKube:
    def __init__(self, data: dict[str, str]) -> None:
        self.data = data

    def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        assert (res.plural, name, namespace) == ("secrets", "registry-push", "d8-ai-models")
        return {"data": self.data}


CONFIG = Config.model_validate(
    {
        "systemNamespace": "d8-ai-models",
        "registry": {"host": HOST, "authSecretName": "registry-push"},
    }
)
ORIGIN = "registry.authSecretName: Secret d8-ai-models/registry-push key .dockerconfigjson"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not base64!", f"{ORIGIN} is not base64"),
        (
            base64.b64encode(b'{"auths": {"' + HOST.encode() + b'": {"auth": "\xff"}}}').decode(),
            f"{ORIGIN} is not a usable docker config JSON: not JSON (UnicodeDecodeError)",
        ),
    ],
)
def test_startup_names_the_secret_of_a_malformed_docker_config(data: str, message: str) -> None:
    kube: Any = SecretKube({".dockerconfigjson": data})
    with pytest.raises(ConfigError) as caught:
        cli.registry_cleaner(kube, CONFIG)
    assert str(caught.value) == message


def test_startup_reads_the_credentials_of_the_secret() -> None:
    data = base64.b64encode(docker_config({HOST: {"auth": ENCODED}})).decode()
    kube: Any = SecretKube({".dockerconfigjson": data})
    access = cli.registry_cleaner(kube, CONFIG)._access
    assert (access.host, access.username, access.password) == (HOST, "pusher", "pa:ss")
    assert "pa:ss" not in repr(access)


NEITHER = (
    f"the entry for {HOST} has neither a base64 'auth' of user:password nor "
    "'username' and 'password'"
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("auths", "why"),
    [
        ({HOST: {"auth": "s3cret%%"}}, NEITHER),  # not base64
        ({HOST: {"auth": _b64(b"pusher-s3cret")}}, NEITHER),  # no colon
        ({HOST: {"auth": _b64(b"\xffpusher:s3cret")}}, NEITHER),  # a byte that is not UTF-8
        ({HOST: ["pusher", "s3cret"]}, f"the entry for {HOST} is not an object"),
        (["s3cret"], 'no "auths" object'),
    ],
)
def test_controller_start_fails_on_a_malformed_docker_config(
    auths: object, why: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    kube = SecretKube({".dockerconfigjson": _b64(docker_config(auths))})
    monkeypatch.setattr(cli, "load_api_client", lambda path: None)
    monkeypatch.setattr(cli, "KubeClient", lambda *args, **kwargs: kube)
    config = tmp_path / "config.json"
    config.write_text(CONFIG.model_dump_json(by_alias=True))
    assert cli.main(["--config", str(config)]) == 2
    stderr = capsys.readouterr().err
    assert stderr == f"ai-models-controller: {ORIGIN} is not a usable docker config JSON: {why}\n"
    assert "s3cret" not in stderr


def test_a_manifest_without_a_reported_digest_is_a_registry_error() -> None:
    transport = FakeTransport(lambda request: (200, {}, b""))
    with pytest.raises(RegistryError) as caught:
        RegistryCleaner(RegistryAccess(HOST), transport).resolve("m/x", "latest")
    assert str(caught.value) == f"registry {HOST} did not report the digest of m/x:latest"


def test_registry_answers_become_registry_errors() -> None:
    transport = FakeTransport(lambda request: (403, {}, b""))
    with pytest.raises(RegistryError, match=r"^DELETE manifest .* registry answered 403"):
        RegistryCleaner(RegistryAccess(HOST), transport).delete("m/x", DIGEST)
    gone = RegistryCleaner(RegistryAccess(HOST), FakeTransport(lambda request: (404, {}, b"")))
    assert gone.delete("m/x", DIGEST) is False
    assert gone.resolve("m/x", "latest") is None


def test_a_staging_blob_is_unlinked_from_its_repository() -> None:
    transport = Transport("https://auth.example/token")
    staging = "ai-models/upload/upload-u"
    assert cleaner(transport).delete_blob(staging, DIGEST) is True
    last = transport.seen[-1]
    assert (last.method, last.url) == (
        "DELETE",
        f"https://{HOST}/v2/{staging}/blobs/{DIGEST}",
    )
    gone = RegistryCleaner(RegistryAccess(HOST), FakeTransport(lambda request: (404, {}, b"")))
    assert gone.delete_blob(staging, DIGEST) is False
    refused = RegistryCleaner(RegistryAccess(HOST), FakeTransport(lambda request: (405, {}, b"")))
    with pytest.raises(RegistryError, match=r"^DELETE blob sha256:a+ in ai-models/upload/upload-u"):
        refused.delete_blob(staging, DIGEST)
