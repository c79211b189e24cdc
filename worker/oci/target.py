"""Where a published artifact goes: a registry repository or a local OCI image layout directory.

``parse_destination`` turns the worker's DEST argument into an ``ArtifactTarget``. Which kind
DEST is (``is_layout_path``), the docker reference grammar's rule for telling a host from a name:

- ``http://`` or ``https://`` in front, or a first ``/``-component that has a ``.`` or a ``:``
  or is ``localhost`` (``host[:port]/repository[:tag]``) — an OCI registry (HTTPS unless
  ``http://`` or ``insecure=True`` says otherwise);
- a path starting with ``/``, ``./`` or ``../`` (any characters), or a relative path of
  letters, digits, ``.``, ``_``, ``-`` whose first component is not a host (``models/minilm``,
  ``out``) — an OCI image layout directory, created when missing. A ``:tag`` after the last
  ``/`` is the tag (``./out:v1``: directory ``./out``, tag ``v1``), always: a directory whose
  name has a colon is reached by giving a tag (``./a:b:latest``). Without one, ``latest``;
- a lone host (``localhost:5000``, ``registry.local``) or anything else is refused.

Both targets take blobs as a ``ChunkOpener`` (bytes from an offset) rather than one iterator, so
that each can resume where its medium stopped: the registry at its committed upload offset, the
layout at the end of its partial file.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from oci.auth import find_auth_file, load_credentials
from oci.digest import sha256_digest
from oci.errors import InvalidReference
from oci.reference import TAG_PATTERN, Reference, parse_reference
from oci.registry import RegistryClient, RegistrySettings
from worker.oci.content import ByteCounter, ChunkOpener
from worker.oci.layout import OciLayout
from worker.oci.modelpack import ARTIFACT_TYPE
from worker.oci.registry_errors import registry_errors
from worker.oci.upload import BlobUpload, UploadSessions


class ArtifactTarget(Protocol):
    """The few operations publishing needs; implementations are safe to call from threads."""

    @property
    def tag(self) -> str | None:
        """The tag the manifest gets (None: pushed by digest only)."""
        ...

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        """True when the blob is already there (then it is neither read nor sent). A layout
        also checks the file's ``size``; a registry verified the digest when it took the blob."""
        ...

    def put_blob(
        self,
        open_chunks: ChunkOpener,
        size: int,
        digest: str | None,
        on_bytes: ByteCounter,
        *,
        streamed: bool = False,
    ) -> str:
        """Stores a blob of ``size`` bytes; returns its digest. ``DigestMismatch`` when the
        bytes do not match ``digest`` or ``size``. ``streamed``: the source is cheap to read
        again (a local file), so a registry gets the blob in one streaming request."""
        ...

    def put_manifest(self, data: bytes, media_type: str, tag: str | None) -> str:
        """Stores the manifest (tagged when ``tag``); returns its digest."""
        ...

    def pinned(self, digest: str) -> str:
        """The reference that names the artifact by digest, e.g. ``host/repo@sha256:…``."""
        ...


class RegistryTarget:
    def __init__(
        self,
        client: RegistryClient,
        reference: Reference,
        *,
        mount_from: Sequence[str] = (),
        sessions: UploadSessions | None = None,
    ) -> None:
        self.client = client
        self.reference = reference
        self._mount_from = tuple(mount_from)
        self._sessions = sessions or UploadSessions()

    @property
    def tag(self) -> str | None:
        return self.reference.tag

    @property
    def mount_from(self) -> tuple[str, ...]:
        return self._mount_from

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        repository, client = self.reference.repository, self.client
        with registry_errors():
            if client.blob_size(repository, digest) is not None:
                return True
            # Another repository of the registry may hold it (another model with the same file).
            return any(client.mount_blob(repository, digest, other) for other in self._mount_from)

    def put_blob(
        self,
        open_chunks: ChunkOpener,
        size: int,
        digest: str | None,
        on_bytes: ByteCounter,
        *,
        streamed: bool = False,
    ) -> str:
        upload = BlobUpload(
            self.client, self.reference.repository, self._sessions, open_chunks, size, digest,
            streamed=streamed,
        )  # fmt: skip
        with registry_errors():
            return upload.run(on_bytes)

    def put_manifest(self, data: bytes, media_type: str, tag: str | None) -> str:
        reference = tag or sha256_digest(data)
        with registry_errors():
            return self.client.put_manifest(self.reference.repository, reference, data, media_type)

    def pinned(self, digest: str) -> str:
        return str(Reference(self.reference.registry, self.reference.repository, digest=digest))


class LayoutTarget:
    def __init__(self, layout: OciLayout, tag: str | None, artifact_type: str | None) -> None:
        self.layout = layout
        self._tag = tag
        self._artifact_type = artifact_type

    @property
    def tag(self) -> str | None:
        return self._tag

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        return self.layout.has_blob(digest, size)

    def put_blob(
        self,
        open_chunks: ChunkOpener,
        size: int,
        digest: str | None,
        on_bytes: ByteCounter,
        *,
        streamed: bool = False,
    ) -> str:
        del streamed  # a file in a layout is written as it streams anyway
        return self.layout.write_blob(open_chunks, size, digest, on_bytes)

    def put_manifest(self, data: bytes, media_type: str, tag: str | None) -> str:
        return self.layout.add_manifest(data, media_type, tag, self._artifact_type)

    def pinned(self, digest: str) -> str:
        return f"{self.layout.root}@{digest}"


DEFAULT_LAYOUT_TAG = "latest"
"""The tag of a layout destination given without one (oras's default tag too)."""
_PORTABLE_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?(:[^/@]*)?(@[^/]*)?$")
"""A bare relative path, then an optional ``:tag`` and ``@digest`` (materialize's REF)."""
_DIGEST_SUFFIX = re.compile(r"@[a-z0-9]+:[0-9A-Za-z]+$")


def _is_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def is_layout_path(dest: str) -> bool:
    """True when DEST names a layout directory rather than a registry (rules in the module doc)."""
    if dest.startswith(("http://", "https://")):
        return False
    if dest.startswith(("/", "./", "../")) or dest in (".", ".."):
        return True
    first, slash, _ = dest.partition("/")
    if slash:
        return not _is_host(first) and _PORTABLE_PATH.match(dest) is not None
    directory = re.split("[:@]", dest, maxsplit=1)[0]
    return not _is_host(directory) and _PORTABLE_PATH.match(dest) is not None


def split_layout_tag(dest: str) -> tuple[str, str | None]:
    """``(directory, tag)`` of a layout DEST: the tag follows the last ``:`` after the last
    ``/``. ``InvalidReference`` when that tag is not a valid tag."""
    last = dest.rfind("/")
    colon = dest.rfind(":")
    if colon <= last:
        return dest, None
    directory, tag = dest[:colon], dest[colon + 1 :]
    if not TAG_PATTERN.match(tag):
        raise InvalidReference(
            f"{dest!r}: {tag!r} is not a valid tag (a layout destination is DIR[:TAG]; for a "
            "directory whose name has a colon, add a tag: DIR:latest)"
        )
    return directory, tag


MOUNT_FROM_ENV = "AI_MODELS_MOUNT_FROM"
"""Comma-separated repositories of the destination registry that may already hold the source's
blobs (the controller sets it: Ready models of the same source, controller/mountfrom.py)."""
MAX_MOUNT_CANDIDATES = 8


def mount_candidates(value: str, own: str) -> tuple[str, ...]:
    """The repositories ``value`` names, other than ``own``: at most ``MAX_MOUNT_CANDIDATES``
    (each costs a request per blob); a malformed name is skipped — a hint never fails a run."""
    names: list[str] = []
    for name in (part.strip() for part in value.split(",")):
        if not name or name == own or name in names:
            continue
        try:
            reference = parse_reference(f"mount.invalid/{name}")
        except InvalidReference:
            continue
        if reference.tag is None and reference.digest is None and reference.repository == name:
            names.append(name)
        if len(names) == MAX_MOUNT_CANDIDATES:
            break
    return tuple(names)


def parse_destination(
    dest: str,
    *,
    tag: str | None = None,
    insecure: bool = False,
    ca_file: Path | None = None,
    auth_file: Path | None = None,
    settings: RegistrySettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
    mount_from: Sequence[str] | None = None,
    upload_state: Path | None = None,
) -> ArtifactTarget:
    """The target DEST names. ``upload_state`` keeps registry upload sessions across runs;
    ``mount_from`` (default: ``$AI_MODELS_MOUNT_FROM``) names repositories to mount blobs from."""
    if is_layout_path(dest):
        if _DIGEST_SUFFIX.search(dest):
            raise InvalidReference(f"{dest!r}: a destination names a tag, not a digest")
        directory, written_tag = split_layout_tag(dest)
        layout = OciLayout(Path(directory), create=True)
        return LayoutTarget(layout, written_tag or tag or DEFAULT_LAYOUT_TAG, ARTIFACT_TYPE)
    reference = parse_reference(dest)
    if reference.digest is not None:
        raise InvalidReference(f"{dest!r}: a destination names a tag, not a digest")
    if reference.tag is None and tag is not None:
        reference = Reference(reference.registry, reference.repository, tag, None, reference.scheme)
    client = connect(
        reference, insecure=insecure, ca_file=ca_file, auth_file=auth_file, settings=settings,
        sleep=sleep,
    )  # fmt: skip
    sessions = UploadSessions(upload_state)
    if mount_from is None:
        mount_from = mount_candidates(os.environ.get(MOUNT_FROM_ENV, ""), reference.repository)
    return RegistryTarget(client, reference, mount_from=mount_from, sessions=sessions)


def connect(
    reference: Reference,
    *,
    insecure: bool = False,
    ca_file: Path | None = None,
    auth_file: Path | None = None,
    settings: RegistrySettings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RegistryClient:
    """A client for the reference's registry, with the credentials the auth file has for it."""
    if reference.scheme == "https" and insecure:
        raise InvalidReference(f"{reference}: https:// and insecure contradict each other")
    with registry_errors():
        credentials = load_credentials(reference.registry, find_auth_file(auth_file))
    return RegistryClient(
        reference.registry,
        insecure=insecure or reference.scheme == "http",
        ca_file=ca_file,
        credentials=credentials,
        settings=settings,
        sleep=sleep,
    )
