"""TLS to both sources: the configured CA is trusted, nothing else replaces it.

The machine's environment sets ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE`` to the system bundle,
which does not hold the test CA: a client that let the environment override the configured CA
would fail here.
"""

from __future__ import annotations

from collections.abc import Iterator

import gguf
import pytest

from tests.ground.certs import CertificateAuthority, KeyPair
from tests.ground.hub import HubEmulator, run_hub
from tests.ground.hub_repo import HubRepo
from tests.ground.ollama import push_ollama_model
from tests.ground.registry import Registry, run_registry
from tests.integration.sources import builders
from worker.errors import SourceUnavailable
from worker.sources import open_source
from worker.sources.settings import SourceSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, KeyPair]:
    ca = CertificateAuthority(tmp_path_factory.mktemp("tls-ca"))
    return ca, ca.issue("server", "127.0.0.1", hosts=("127.0.0.1",), server=True)


@pytest.fixture(scope="module")
def tls_hub(
    authority: tuple[CertificateAuthority, KeyPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubEmulator]:
    with run_hub(tls=authority[1]) as hub:
        hub.add(HubRepo.from_dir("test/tls", builders.small_repo(tmp_path_factory.mktemp("m"))))
        yield hub


@pytest.fixture(scope="module")
def tls_registry(
    authority: tuple[CertificateAuthority, KeyPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    ca, pair = authority
    work = tmp_path_factory.mktemp("tls-registry")
    with run_registry(work, tls=pair, ca_cert=ca.cert, name="tls-registry") as registry:
        model = builders.write_gguf(work / "tiny.gguf", "llama", int(gguf.LlamaFileType.MOSTLY_F16))
        push_ollama_model(registry.url, "tiny", "1b", gguf=model, config={"model_format": "gguf"},
                          verify=str(ca.cert))  # fmt: skip
        yield registry


def _hub_plan(hub: HubEmulator, **tls: object) -> str | None:
    settings = SourceSettings(hf_endpoint=hub.url, timeout_seconds=10, **tls)  # type: ignore[arg-type]
    return open_source("https://huggingface.co/test/tls", settings).plan().revision


def _registry_plan(registry: Registry, **tls: object) -> str | None:
    settings = SourceSettings(ollama_registry=registry.url, timeout_seconds=10, **tls)  # type: ignore[arg-type]
    return open_source("https://ollama.com/library/tiny:1b", settings).plan().revision


def test_hub_with_the_configured_ca(
    tls_hub: HubEmulator, authority: tuple[CertificateAuthority, KeyPair]
) -> None:
    assert _hub_plan(tls_hub, ca_bundle=str(authority[0].cert)) == tls_hub.repos["test/tls"].commit
    assert _hub_plan(tls_hub, insecure=True) == tls_hub.repos["test/tls"].commit
    with pytest.raises(SourceUnavailable, match="cannot reach the Hub"):
        _hub_plan(tls_hub)


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")  # insecure=True is the point
def test_registry_with_the_configured_ca(
    tls_registry: Registry, authority: tuple[CertificateAuthority, KeyPair]
) -> None:
    digest = _registry_plan(tls_registry, ca_bundle=str(authority[0].cert))
    assert str(digest).startswith("sha256:")
    assert _registry_plan(tls_registry, insecure=True) == digest
    with pytest.raises(SourceUnavailable, match="cannot reach the registry"):
        _registry_plan(tls_registry)
