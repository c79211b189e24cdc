"""The worker's door to the Ollama registry, through the shared registry client (``oci``).

The Ollama registry speaks the OCI distribution API, so the client the worker pushes with reads
it too: the manifest of ``library/<name>:<tag>`` (bounded, verified against its digest and the
one the registry announces), the tag list, a small blob read whole with a size cap (the image
config), and a blob by range or as a stream (the GGUF). A token-protected mirror works through
the standard ``WWW-Authenticate`` challenge: anonymous tokens for a public registry, or the
credentials the docker config the worker is given (``REGISTRY_AUTH_FILE``, else
``$DOCKER_CONFIG/config.json``) has for the mirror's host. One try per request, like the Hub
source: a failed pod is retried by its Job, and the transfer resumes.

``source_error`` is the one table from the client's errors to the source's reasons (the
distribution error code wins over the HTTP status).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from requests.adapters import BaseAdapter

from oci import errors
from oci.auth import find_auth_file, load_credentials
from oci.registry import RegistryClient, RegistrySettings
from worker.errors import (
    InvalidSource,
    SourceNotFound,
    SourceUnauthorized,
    SourceUnavailable,
    WorkerError,
)
from worker.sources.settings import SourceSettings

MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
MAX_TAGS = 1000


@dataclass(frozen=True)
class RegistryManifest:
    raw: bytes
    digest: str
    """``sha256:<hex>`` of ``raw``, computed by the client and checked against the registry's."""
    document: dict[str, object]


def source_error(error: errors.OciError, subject: str) -> WorkerError:
    """The source's reason for a failed registry request about ``subject``."""
    if isinstance(error, errors.Unauthorized):
        if error.status is None:
            return SourceUnauthorized(f"{subject}: {error.message}")
        return SourceUnauthorized(f"{subject}: the registry refused access (HTTP {error.status})")
    if isinstance(error, errors.CredentialsInvalid):
        return SourceUnauthorized(f"{subject}: {error.message}")
    if isinstance(error, errors.Refused):
        return _refusal(error, subject)
    if isinstance(error, errors.InvalidReference):
        return InvalidSource(f"{subject}: {error.message}")
    if isinstance(error, errors.Unavailable) and error.status is not None:
        return SourceUnavailable(f"{subject}: the registry answered HTTP {error.status}")
    if isinstance(error, errors.Unavailable | errors.TlsFailure):
        return SourceUnavailable(f"{subject}: cannot reach the registry: {error.message}")
    return SourceUnavailable(f"{subject}: {error.message}")


def _refusal(error: errors.Refused, subject: str) -> WorkerError:
    status, codes = error.status, error.codes
    if "NAME_UNKNOWN" in codes:
        return SourceNotFound(f"{subject}: no such model in the registry")
    # A registry answers MANIFEST_UNKNOWN for a missing tag and a missing model alike; the
    # source refines it with the tag list (RevisionNotFound when the model exists).
    if status in (404, 410) or codes & {"MANIFEST_UNKNOWN", "BLOB_UNKNOWN"}:
        return SourceNotFound(
            f"{subject}: not found in the registry; the name or the tag is wrong: delete the "
            "Model and create it again with one that https://ollama.com/library lists"
        )
    if status == 400 or codes & {"NAME_INVALID", "TAG_INVALID", "DIGEST_INVALID"}:
        return InvalidSource(f"{subject}: the registry rejected the reference as invalid")
    return SourceUnavailable(f"{subject}: the registry answered HTTP {status}")


@contextlib.contextmanager
def _source_errors(subject: str) -> Iterator[None]:
    try:
        yield
    except errors.OciError as error:
        raise source_error(error, subject) from error


class OllamaRegistryClient:
    def __init__(
        self,
        settings: SourceSettings,
        *,
        auth_file: Path | None = None,
        transport: BaseAdapter | None = None,
    ) -> None:
        """``auth_file``: the docker config to read (default: the environment's, see above);
        ``transport`` replaces the network (tests)."""
        url = urlsplit(settings.ollama_registry)
        with _source_errors(url.netloc):
            credentials = load_credentials(url.netloc, find_auth_file(auth_file))
        self._client = RegistryClient(
            url.netloc,
            insecure=url.scheme == "http",
            ca_file=Path(settings.ca_bundle) if settings.ca_bundle else None,
            verify_tls=not settings.insecure,
            credentials=credentials,
            settings=RegistrySettings(
                attempts=1,
                connect_timeout=settings.timeout_seconds,
                read_timeout=settings.timeout_seconds,
                environment_proxies=True,
            ),
            transport=transport,
            path_prefix=url.path,
        )

    def close(self) -> None:
        self._client.close()

    def manifest(self, repository: str, reference: str) -> RegistryManifest:
        subject = f"{repository}:{reference}"
        with _source_errors(subject):
            manifest = self._client.get_manifest(repository, reference, MANIFEST_MEDIA_TYPES)
            document = manifest.document(subject)
        return RegistryManifest(raw=manifest.data, digest=manifest.digest, document=document)

    def tags(self, repository: str) -> tuple[str, ...] | None:
        """The repository's tags (at most ``MAX_TAGS``), or None when the registry will not say."""
        try:
            return self._client.tags(repository, MAX_TAGS)
        except errors.OciError:
            return None

    def read_blob(self, repository: str, digest: str, limit: int) -> bytes:
        """A small blob whole, refusing more than ``limit`` bytes; its digest is verified."""
        with _source_errors(f"{repository}@{digest}"):
            return self._client.read_blob(repository, digest, limit)

    def read_range(self, repository: str, digest: str, offset: int, length: int) -> bytes:
        with _source_errors(f"{repository}@{digest[:19]}"):
            return self._client.blob_range(repository, digest, offset, length)

    def stream_blob(
        self, repository: str, digest: str, offset: int = 0, chunk_size: int = 8 << 20
    ) -> Iterator[bytes]:
        with _source_errors(f"{repository}@{digest[:19]}"):
            yield from self._client.blob_chunks(repository, digest, offset, chunk_size)
