"""How the registry client behaves: tries and backoff, timeouts, chunk size, a static token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RegistrySettings:
    attempts: int = 6
    """Tries per request (the first included) before ``Unavailable``."""
    backoff_initial: float = 0.5
    """Seconds before the second try; doubled before each further one."""
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    """A larger ``Retry-After`` is cut to this (a registry cannot park a client for hours)."""
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    """Seconds without a byte; a registry may take long to verify a large blob on the final PUT."""
    chunk_size: int = 8 << 20
    """Bytes per upload PATCH and per read of a blob download (memory per transfer)."""
    bearer_token_file: Path | None = None
    """A static bearer token (re-read per request) instead of docker-config credentials: the
    delivery endpoint's projected ServiceAccount token."""
    environment_proxies: bool = False
    """Send through the proxies of ``HTTPS_PROXY``/``NO_PROXY`` (a public registry such as
    Ollama's); an in-cluster registry is reached directly."""

    def backoff(self, attempt: int) -> float:
        """The pause after failed try number ``attempt`` (1-based)."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1)))
