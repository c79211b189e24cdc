"""Where the worker's sources live and how to reach them: endpoints, credentials, TLS, timeouts.

One frozen value, built once from the environment the controller gives the Job (or from a
laptop's shell): ``HF_ENDPOINT``, ``HF_TOKEN`` or ``HF_TOKEN_PATH`` (the controller mounts the
per-Job Secret as a file and names it), ``OLLAMA_REGISTRY``, ``SOURCES_CA_BUNDLE`` and
``SOURCES_INSECURE``. The token is kept out of ``repr`` so it never reaches a log line.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from api.protocol import (
    ENV_HF_ENDPOINT,
    ENV_HF_TOKEN_PATH,
    ENV_OLLAMA_REGISTRY,
    ENV_SOURCES_CA_BUNDLE,
)
from worker.errors import InvalidSource, SourceUnauthorized

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
DEFAULT_OLLAMA_REGISTRY = "https://registry.ollama.ai"
DEFAULT_TIMEOUT_SECONDS = 60.0
# A token file is a few hundred bytes; anything much larger is a wrong mount, not a token.
MAX_TOKEN_FILE_BYTES = 64 << 10
_TRUE = frozenset({"1", "true", "yes", "on"})


def _base_url(value: str, what: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidSource(f"{what} {value!r} is not an http(s) base URL")
    return value.strip().rstrip("/")


@dataclass(frozen=True)
class SourceSettings:
    hf_endpoint: str = DEFAULT_HF_ENDPOINT
    """The Hub (or a mirror) every Hugging Face call goes to, whatever host the URL names."""
    hf_token: str | None = field(default=None, repr=False)
    """Bearer token for private and gated repositories; never logged, never in errors."""
    ollama_registry: str = DEFAULT_OLLAMA_REGISTRY
    """Base URL of the registry that serves ``ollama.com/library`` models."""
    ca_bundle: str | None = None
    """PEM file of extra trusted CAs for both sources (a mirror behind a private CA)."""
    insecure: bool = False
    """Skip TLS verification (development only)."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    """Connect and per-read timeout of every request; a stalled transfer fails, then retries."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hf_endpoint", _base_url(self.hf_endpoint, "HF endpoint"))
        registry = _base_url(self.ollama_registry, "Ollama registry")
        object.__setattr__(self, "ollama_registry", registry)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SourceSettings:
        env = os.environ if environ is None else environ
        return cls(
            hf_endpoint=env.get(ENV_HF_ENDPOINT) or DEFAULT_HF_ENDPOINT,
            hf_token=_token(env),
            ollama_registry=env.get(ENV_OLLAMA_REGISTRY) or DEFAULT_OLLAMA_REGISTRY,
            ca_bundle=env.get(ENV_SOURCES_CA_BUNDLE) or None,
            insecure=env.get("SOURCES_INSECURE", "").strip().lower() in _TRUE,
        )

    def verify(self) -> ssl.SSLContext | bool:
        """What both HTTP clients pass as ``verify``: a context with the CA bundle, or a flag."""
        if self.insecure:
            return False
        if self.ca_bundle is None:
            return True
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=self.ca_bundle)
        return context


def _token(env: Mapping[str, str]) -> str | None:
    """The mounted Secret file wins over the variable: it is what the controller provides."""
    path = env.get(ENV_HF_TOKEN_PATH)
    if path:
        try:
            with Path(path).open("rb") as handle:
                raw = handle.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as exc:
            raise SourceUnauthorized(
                f"the Hugging Face token file named by HF_TOKEN_PATH cannot be read: "
                f"{exc.strerror or exc}"
            ) from exc
        if len(raw) > MAX_TOKEN_FILE_BYTES:
            raise SourceUnauthorized("the Hugging Face token file is too large to be a token")
        return raw.decode("utf-8", errors="replace").strip() or None
    return (env.get("HF_TOKEN") or "").strip() or None
