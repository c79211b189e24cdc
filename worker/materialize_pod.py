"""``materialize-pod``: the init container of a consuming pod fills ``/models/<name>``.

The webhook (docs/consumption.md) gives the init container three things: the pod's
``ai.deckhouse.io/model-digests`` annotation as a file (downward API), a projected
ServiceAccount token bound to the pod (audience ``ai-models-delivery``), and the URL of its own
node's delivery endpoint (docs/delivery.md). Each model is pulled with ``materialize`` from that
endpoint as from an OCI registry whose repositories are

    model/<pod namespace>/<name>      a Model (of the pod's namespace)
    clustermodel/<name>               a ClusterModel

pinned to the digest the annotation records, with ``Authorization: Bearer <token>`` (re-read from
its file for every request: the kubelet rotates it in place; never in argv or a message).

The digests file is untrusted input of bounded size: at most 64 KiB, a JSON list of at most 16
``{"kind", "name", "digest"}`` objects, DNS-1123 names, ``sha256:<64 hex>`` digests, no name
twice (each is a directory under ``--to``). A 403 of the endpoint is ``DeliveryForbidden`` with
the endpoint's own reason, a 401 ``DeliveryUnauthorized``; a transient failure (the endpoint or
its registry unavailable, a response cut short — what the node cache does when it finds a
corrupt cached blob) is retried with ``materialize``'s resume, then exits 1.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from oci.auth import MAX_TOKEN_FILE_BYTES
from oci.digest import is_digest
from oci.errors import InvalidReference
from oci.registry import RegistrySettings
from worker.errors import (
    DeliveryForbidden,
    DeliveryUnauthorized,
    InvalidModelDigests,
    TransientError,
)
from worker.oci.materialize import Materialized, materialize
from worker.oci.registry_errors import RegistryAuthRefusal

MAX_DIGESTS_FILE_BYTES = 64 << 10
MAX_MODELS = 16
"""The webhook admits at most 16 models per pod (``controller.consumption.MAX_MODELS``)."""
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_MAX_NAME = 253
_NETLOC = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
Kind = Literal["Model", "ClusterModel"]


@dataclass(frozen=True)
class PodModel:
    kind: Kind
    name: str
    digest: str

    def repository(self, namespace: str) -> str:
        """The delivery endpoint's repository of this model for a pod of ``namespace``."""
        if self.kind == "ClusterModel":
            return f"clustermodel/{self.name}"
        return f"model/{namespace}/{self.name}"


def parse_digests(data: bytes, origin: str) -> tuple[PodModel, ...]:
    """The models of a digests file; ``InvalidModelDigests`` naming ``origin`` otherwise."""

    def invalid(why: str) -> InvalidModelDigests:
        return InvalidModelDigests(
            f"{origin}: {why}; it is the pod annotation ai.deckhouse.io/model-digests, written "
            "by the ai-models controller before it lifts the pod's scheduling gate"
        )

    if len(data) > MAX_DIGESTS_FILE_BYTES:
        raise invalid(f"larger than {MAX_DIGESTS_FILE_BYTES:,} bytes")
    if not data.strip():
        raise invalid("empty (the annotation is missing)")
    try:
        document = json.loads(data)
    except ValueError as error:  # UnicodeDecodeError included
        raise invalid(f"not JSON ({type(error).__name__})") from None
    if not isinstance(document, list) or not document:
        raise invalid('expected a non-empty JSON list of {"kind", "name", "digest"}')
    if len(document) > MAX_MODELS:
        raise invalid(f"{len(document)} models; at most {MAX_MODELS}")
    models: list[PodModel] = []
    for position, entry in enumerate(document, start=1):
        if not isinstance(entry, dict) or set(entry) != {"kind", "name", "digest"}:
            raise invalid(
                f'entry {position} is not an object with exactly "kind", "name", "digest"'
            )
        kind, name, digest = entry["kind"], entry["name"], entry["digest"]
        if kind not in ("Model", "ClusterModel"):
            raise invalid(f'entry {position}: kind must be "Model" or "ClusterModel"')
        if not isinstance(name, str) or len(name) > _MAX_NAME or not _NAME.fullmatch(name):
            raise invalid(f"entry {position}: the name is not a DNS-1123 subdomain")
        if not isinstance(digest, str) or not is_digest(digest):
            raise invalid(f"entry {position}: the digest is not sha256:<64 hex>")
        if any(m.name == name for m in models):
            raise invalid(f"entry {position}: {name!r} appears twice (one directory per name)")
        models.append(PodModel(kind, name, digest))
    return tuple(models)


def read_digests(path: Path) -> tuple[PodModel, ...]:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_DIGESTS_FILE_BYTES + 1)  # bounded: never read a huge file
    except OSError as error:
        raise InvalidModelDigests(
            f"{path}: cannot be read ({error.strerror or type(error).__name__})"
        ) from None
    return parse_digests(data, str(path))


def token_namespace(token_file: Path) -> str:
    """The namespace claim of the pod's ServiceAccount token (read, not verified: the
    delivery endpoint verifies the token; the client only names its repositories)."""
    try:
        with token_file.open("rb") as file:
            raw = file.read(MAX_TOKEN_FILE_BYTES + 1).strip()
        payload = raw.split(b".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        namespace = claims["kubernetes.io"]["namespace"]
    except OSError as error:
        raise DeliveryUnauthorized(
            f"token file {token_file} cannot be read ({error.strerror or type(error).__name__})"
        ) from None
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error):
        namespace = None
    if (
        len(raw) > MAX_TOKEN_FILE_BYTES
        or not isinstance(namespace, str)
        or not _NAME.fullmatch(namespace)
    ):
        raise DeliveryUnauthorized(
            f"token file {token_file} does not hold a Kubernetes ServiceAccount token with a "
            "namespace claim"
        )
    return namespace


def parse_endpoint(endpoint: str) -> tuple[str, str]:
    """``(scheme, host[:port])`` of ``http(s)://host[:port]`` (``InvalidReference`` otherwise:
    the CLI reports it as ``InvalidDestination``)."""
    parts = urlsplit(endpoint)
    if (
        parts.scheme not in ("http", "https")
        or not _NETLOC.fullmatch(parts.netloc)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise InvalidReference(
            f"--endpoint {endpoint!r} is not http(s)://host[:port] (webhook.materialize."
            "deliveryEndpoint; the kubelet expands $(HOST_IP) from status.hostIP)"
        )
    return parts.scheme, parts.netloc


def materialize_pod(
    digests_file: Path,
    token_file: Path,
    endpoint: str,
    dest: Path,
    *,
    namespace: str | None = None,
    ca_file: Path | None = None,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Materialized]:
    """Every model of the digests file into ``dest/<name>``, in the file's order."""
    models = read_digests(digests_file)
    scheme, host = parse_endpoint(endpoint)
    namespace = namespace or token_namespace(token_file)
    settings = RegistrySettings(bearer_token_file=token_file, attempts=4)
    done: list[Materialized] = []
    for model in models:
        ref = f"{scheme}://{host}/{model.repository(namespace)}@{model.digest}"
        for attempt in range(1, attempts + 1):
            try:
                done.append(materialize(
                    ref, dest / model.name, ca_file=ca_file, settings=settings, sleep=sleep
                ))  # fmt: skip
                break
            except RegistryAuthRefusal as refusal:
                raise _refusal(refusal, model, endpoint) from None
            except TransientError:
                if attempt == attempts:
                    raise
                sleep(2.0 * attempt)  # the partial files stay: the next attempt resumes
    return done


def _refusal(
    refusal: RegistryAuthRefusal, model: PodModel, endpoint: str
) -> DeliveryForbidden | DeliveryUnauthorized:
    why = refusal.server_message or f"HTTP {refusal.status}"
    what = f"{model.kind} {model.name}@{model.digest}"
    if refusal.status == 403:
        return DeliveryForbidden(f"the delivery endpoint {endpoint} refused {what}: {why}")
    return DeliveryUnauthorized(
        f"the delivery endpoint {endpoint} did not accept the pod's token for {what}: {why}"
    )
