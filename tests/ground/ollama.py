"""Pushes an Ollama-format model into a distribution registry over plain HTTP, like `ollama push`.

An Ollama model is a Docker schema-2 manifest whose config blob is the Ollama image config
(``model_format``, ``model_family``, ``file_type``…) and whose layers carry Ollama media types:
``application/vnd.ollama.image.model`` (the GGUF), ``…template``, ``…params``, ``…system``,
``…license``. Blobs go up with the two-step upload (POST, then PUT with the digest), the manifest
with a PUT by tag; the registry's own digest of the manifest is returned for the tests to compare.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
OLLAMA = "application/vnd.ollama.image"


@dataclass(frozen=True)
class Blob:
    media_type: str
    digest: str
    size: int
    source: Path | bytes

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class PushedModel:
    repository: str
    """``library/<name>``."""
    tag: str
    manifest_digest: str
    """As the registry states it (``Docker-Content-Digest``)."""
    layers: tuple[Blob, ...]
    config: dict[str, object]

    def layer(self, kind: str) -> Blob:
        return next(b for b in self.layers if b.media_type == f"{OLLAMA}.{kind}")


def _file_blob(media_type: str, path: Path) -> Blob:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return Blob(media_type, f"sha256:{digest.hexdigest()}", path.stat().st_size, path)


def _bytes_blob(media_type: str, data: bytes) -> Blob:
    return Blob(media_type, f"sha256:{hashlib.sha256(data).hexdigest()}", len(data), data)


def _session(verify: str | bool, token: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only; no proxy, no CA bundle from the environment
    session.verify = verify
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def _upload(session: requests.Session, base: str, repository: str, blob: Blob) -> None:
    exists = session.head(f"{base}/v2/{repository}/blobs/{blob.digest}", timeout=30)
    if exists.status_code == 200:
        return
    started = session.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=30)
    assert started.status_code == 202, (started.status_code, started.text)
    location = urljoin(base + "/", started.headers["Location"])
    separator = "&" if "?" in location else "?"
    headers = {"Content-Type": "application/octet-stream"}
    url = f"{location}{separator}digest={blob.digest}"
    if isinstance(blob.source, bytes):
        done = session.put(url, data=blob.source, headers=headers, timeout=300)
    else:
        with blob.source.open("rb") as handle:  # a file object streams with a Content-Length
            done = session.put(url, data=handle, headers=headers, timeout=300)
    assert done.status_code == 201, (done.status_code, done.text)


def push_ollama_model(
    registry_url: str,
    name: str,
    tag: str,
    *,
    gguf: Path,
    config: dict[str, object],
    template: str | None = None,
    params: dict[str, object] | None = None,
    system: str | None = None,
    license_text: str | None = None,
    verify: str | bool = True,
    token: str | None = None,
) -> PushedModel:
    """Upload the layers and the config, then the manifest under ``library/<name>:<tag>``
    (``token``: a bearer token that may push there, for a registry with token auth)."""
    layers = [_file_blob(f"{OLLAMA}.model", gguf)]
    texts = {"template": template, "system": system, "license": license_text}
    if params is not None:
        texts["params"] = json.dumps(params)
    for kind in ("template", "system", "params", "license"):
        if texts.get(kind) is not None:
            layers.append(_bytes_blob(f"{OLLAMA}.{kind}", str(texts[kind]).encode()))
    full_config = {
        **config,
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }
    config_blob = _bytes_blob(CONFIG_MEDIA_TYPE, json.dumps(full_config).encode())
    repository = f"library/{name}"
    session = _session(verify, token)
    for blob in [config_blob, *layers]:
        _upload(session, registry_url, repository, blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    put = session.put(
        f"{registry_url}/v2/{repository}/manifests/{tag}",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": MANIFEST_MEDIA_TYPE},
        timeout=30,
    )
    assert put.status_code == 201, (put.status_code, put.text)
    return PushedModel(
        repository=repository,
        tag=tag,
        manifest_digest=put.headers["Docker-Content-Digest"],
        layers=tuple(layers),
        config=full_config,
    )
