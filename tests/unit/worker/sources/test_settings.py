"""SourceSettings from the environment: endpoints, the token (variable or mounted file), TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from worker.errors import InvalidSource, SourceUnauthorized
from worker.sources.settings import SourceSettings


def test_defaults() -> None:
    settings = SourceSettings.from_env({})
    assert settings == SourceSettings(
        hf_endpoint="https://huggingface.co",
        hf_token=None,
        ollama_registry="https://registry.ollama.ai",
    )
    assert settings.verify() is True


def test_environment_overrides(tmp_path: Path) -> None:
    settings = SourceSettings.from_env(
        {
            "HF_ENDPOINT": "https://hf-mirror.example.com/",
            "HF_TOKEN": " hf_from_variable \n",
            "OLLAMA_REGISTRY": "http://127.0.0.1:5000",
            "SOURCES_INSECURE": "true",
        }
    )
    assert (settings.hf_endpoint, settings.hf_token, settings.ollama_registry) == (
        "https://hf-mirror.example.com",
        "hf_from_variable",
        "http://127.0.0.1:5000",
    )
    assert settings.verify() is False


def test_the_mounted_token_file_wins_over_the_variable(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("hf_from_secret\n")
    env = {"HF_TOKEN_PATH": str(token), "HF_TOKEN": "hf_from_variable"}
    assert SourceSettings.from_env(env).hf_token == "hf_from_secret"
    token.write_text("  \n")
    assert SourceSettings.from_env(env).hf_token is None


def test_an_unreadable_token_file_is_unauthorized(tmp_path: Path) -> None:
    with pytest.raises(SourceUnauthorized, match="HF_TOKEN_PATH cannot be read"):
        SourceSettings.from_env({"HF_TOKEN_PATH": str(tmp_path / "missing")})
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (65 << 10))
    with pytest.raises(SourceUnauthorized, match="too large"):
        SourceSettings.from_env({"HF_TOKEN_PATH": str(huge)})


def test_the_token_never_appears_in_repr() -> None:
    settings = SourceSettings(hf_token="hf_secret_value")
    assert "hf_secret_value" not in repr(settings)
    assert "hf_secret_value" not in str(settings)


@pytest.mark.parametrize(
    "endpoint", ["huggingface.co", "ftp://hub", "https://", "https://hub?x=1", "https://hub#a"]
)
def test_endpoints_must_be_http_base_urls(endpoint: str) -> None:
    with pytest.raises(InvalidSource):
        SourceSettings(hf_endpoint=endpoint)


def test_a_ca_bundle_makes_a_verifying_context(tmp_path: Path) -> None:
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        pytest.skip("no system CA bundle to load")
    context = SourceSettings(ca_bundle=str(bundle)).verify()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
