"""``materialize-pod``'s inputs: the digests file (untrusted, bounded), the token's namespace,
the endpoint; and the bearer token file the registry client sends."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests

from oci.errors import InvalidReference
from oci.registry import RegistryClient, RegistrySettings
from tests.unit.oci.fakes import FakeTransport
from worker.errors import DeliveryUnauthorized, InvalidModelDigests
from worker.materialize_pod import (
    PodModel,
    parse_digests,
    parse_endpoint,
    read_digests,
    token_namespace,
)

D1 = "sha256:" + "a" * 64
SUFFIX = (
    "; it is the pod annotation ai.deckhouse.io/model-digests, written by the ai-models "
    "controller before it lifts the pod's scheduling gate"
)


def test_the_digests_of_a_pod() -> None:
    data = json.dumps([
        {"kind": "Model", "name": "llama", "digest": D1},
        {"kind": "ClusterModel", "name": "qwen2.5", "digest": D1},
    ]).encode()  # fmt: skip
    models = parse_digests(data, "f")
    assert models == (PodModel("Model", "llama", D1), PodModel("ClusterModel", "qwen2.5", D1))
    assert [m.repository("team-a") for m in models] == [
        "model/team-a/llama",
        "clustermodel/qwen2.5",
    ]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty (the annotation is missing)"),
        (b"x" * (64 << 10 + 1), "larger than 65,536 bytes"),
        (b"{not json", "not JSON (JSONDecodeError)"),
        (b"[\x80]", "not JSON (UnicodeDecodeError)"),
        (b"{}", 'expected a non-empty JSON list of {"kind", "name", "digest"}'),
        (b"[]", 'expected a non-empty JSON list of {"kind", "name", "digest"}'),
        (json.dumps([{"kind": "Model", "name": f"m{i}", "digest": D1} for i in range(17)]).encode(),
         "17 models; at most 16"),
        (b'[{"kind": "Model", "name": "a"}]',
         'entry 1 is not an object with exactly "kind", "name", "digest"'),
        (b'[{"kind": "Pod", "name": "a", "digest": "' + D1.encode() + b'"}]',
         'entry 1: kind must be "Model" or "ClusterModel"'),
        (b'[{"kind": "Model", "name": "../etc", "digest": "' + D1.encode() + b'"}]',
         "entry 1: the name is not a DNS-1123 subdomain"),
        (b'[{"kind": "Model", "name": "a", "digest": "sha256:abc"}]',
         "entry 1: the digest is not sha256:<64 hex>"),
        (json.dumps([{"kind": "Model", "name": "a", "digest": D1},
                     {"kind": "ClusterModel", "name": "a", "digest": D1}]).encode(),
         "entry 2: 'a' appears twice (one directory per name)"),
    ],
)  # fmt: skip
def test_a_bad_digests_file_is_invalid_model_digests(data: bytes, why: str) -> None:
    with pytest.raises(InvalidModelDigests) as error:
        parse_digests(data, "/var/run/ai-models/digests/model-digests.json")
    assert error.value.message == f"/var/run/ai-models/digests/model-digests.json: {why}{SUFFIX}"
    assert error.value.exit_code == 2


def test_a_missing_digests_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelDigests, match=r"digests: cannot be read \(No such file"):
        read_digests(tmp_path / "digests")


def _jwt(claims: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


def test_the_namespace_comes_from_the_tokens_claim(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(_jwt({"kubernetes.io": {"namespace": "team-a", "pod": {"name": "p"}}}) + "\n")
    assert token_namespace(token) == "team-a"
    for bad in ("opaque", _jwt({"sub": "x"}), _jwt({"kubernetes.io": {"namespace": "A B"}})):
        token.write_text(bad)
        with pytest.raises(DeliveryUnauthorized) as error:
            token_namespace(token)
        assert error.value.message == (
            f"token file {token} does not hold a Kubernetes ServiceAccount token with a "
            "namespace claim"
        )
        assert bad not in error.value.message


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [("http://10.0.0.5:9444", ("http", "10.0.0.5:9444")),
     ("https://[fd00::1]:9444/", ("https", "[fd00::1]:9444"))],
)  # fmt: skip
def test_endpoints(endpoint: str, expected: tuple[str, str]) -> None:
    assert parse_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://$(HOST_IP):9444",
        "10.0.0.5:9444",
        "ftp://h",
        "http://h/v2",
        "http://u:p@h",
        "http://h?x",
    ],
)
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(InvalidReference, match="is not http"):
        parse_endpoint(endpoint)


def test_the_bearer_token_is_reread_for_each_request_and_sent_to_its_host_only(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("first.token\n")
    seen: list[tuple[str, str | None]] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        seen.append((str(request.url), request.headers.get("Authorization")))
        if "/blobs/" in str(request.url) and "elsewhere" not in str(request.url):
            return 307, {"Location": "http://elsewhere:1/blob"}, b""
        return 200, {"Content-Length": "2", "Docker-Content-Digest": D1}, b"ok"

    client = RegistryClient(
        "node:9444", insecure=True, settings=RegistrySettings(bearer_token_file=token),
        transport=FakeTransport(answer),
    )  # fmt: skip
    client.head_manifest("model/a/b", D1, ("x",))
    token.write_text("rotated.token")
    assert b"".join(client.blob_chunks("model/a/b", D1)) == b"ok"
    assert seen == [
        (f"http://node:9444/v2/model/a/b/manifests/{D1}", "Bearer first.token"),
        (f"http://node:9444/v2/model/a/b/blobs/{D1}", "Bearer rotated.token"),
        ("http://elsewhere:1/blob", None),
    ]
