"""What the user wrote as the source, parsed into one of four typed references (no I/O).

Accepted forms (see ``docs/inspection.md``):

- Hugging Face: ``https://huggingface.co/<org>/<repo>`` (also ``www.huggingface.co``,
  ``hf.co``; a legacy id without an org), with an optional revision as ``/tree/<rev>`` or
  ``?revision=<rev>``, and our selector ``?file=<path>.gguf`` picking one GGUF file. A file's
  page or download URL (``/blob/<rev>/<path>.gguf``, ``/resolve/<rev>/<path>.gguf``) is read as
  revision + selector.
- Ollama: ``https://ollama.com/library/<name>[:<tag>]`` (also ``www.``), tag ``latest`` by default.
- A local path: absolute, or relative starting with ``./`` or ``../``.
- A committed upload (the preparation Job's argument, never typed by a person):
  ``upload+oci://<registry-host>/<repository>@sha256:<hex>?filename=<name>`` (``api.upload``).
- A catalog import (the preparation Job's argument too): ``catalog+oci://<grant
  registry>/<repository>@sha256:<hex>`` (``api.catalog_import``); copied by digest by
  ``prepare``, never inspected.

Anything else is ``InvalidSource`` with a message that says which part is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from api.source import HUGGING_FACE_HOSTS, OLLAMA_HOSTS, hugging_face_url, ollama_url
from worker.errors import InvalidSource

if TYPE_CHECKING:
    from api.upload import UploadFormat

MAX_SPEC_LENGTH = 2048
JOB_SCHEME_SUFFIX = "+oci"
"""The schemes of the Job's own source strings (``upload+oci``, ``catalog+oci``) end so."""
DEFAULT_OLLAMA_TAG = "latest"

# The Hub's own rule for repository names: word characters, '-' and '.', at most 96 characters,
# no '--' or '..', not starting or ending with '-' or '.'.
_REPO_PART = re.compile(r"^[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?$")
# Branch and tag names as git accepts them, kept to printable ASCII without shell or URL syntax.
_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/+-]{0,254}$")
# Not repositories: the Hub's other page trees. Only model repositories are sources.
_NOT_MODELS = frozenset(
    {"datasets", "spaces", "docs", "api", "models", "collections", "papers", "blog", "settings",
     "organizations", "join", "login", "pricing", "tasks", "learn", "buckets"}
)  # fmt: skip
_OLLAMA_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_OLLAMA_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_FILE_PAGES = ("blob", "resolve")


@dataclass(frozen=True)
class HuggingFaceSpec:
    url: str
    repo_id: str
    revision: str | None = None
    """As given (branch, tag or commit); None means the repository's default branch."""
    gguf_file: str | None = None
    """The ``?file=`` selector: one ``.gguf`` path inside the repository."""

    @property
    def canonical_url(self) -> str:
        """The repository (and file) spelled one way, without the revision: the artifact
        records it next to the resolved commit, so every spelling gives one digest."""
        return hugging_face_url(self.repo_id, self.gguf_file)


@dataclass(frozen=True)
class OllamaSpec:
    url: str
    name: str
    tag: str = DEFAULT_OLLAMA_TAG
    tag_given: bool = False
    """Whether the user named the tag (a missing tag then means RevisionNotFound)."""

    @property
    def repository(self) -> str:
        return f"library/{self.name}"

    @property
    def canonical_url(self) -> str:
        return ollama_url(self.name, self.tag)


@dataclass(frozen=True)
class LocalSpec:
    url: str
    path: Path

    @property
    def canonical_url(self) -> str:
        return self.url


@dataclass(frozen=True)
class UploadSpec:
    url: str
    registry_host: str
    repository: str
    """The session's staging repository holding the uploaded blob."""
    digest: str
    filename: str
    format: UploadFormat

    @property
    def canonical_url(self) -> str:
        """``upload:<filename>``: the session and its staging repository are not part of the
        model; the artifact records the blob digest as its revision."""
        return f"upload:{quote(self.filename, safe='')}"


@dataclass(frozen=True)
class CatalogSpec:
    url: str
    registry_host: str
    """The grant's registry: the catalog server's read API."""
    repository: str
    digest: str
    """The entry's manifest digest (``status.source.catalog.remoteDigest``)."""

    @property
    def canonical_url(self) -> str:
        return self.url


SourceSpec = HuggingFaceSpec | OllamaSpec | LocalSpec | UploadSpec | CatalogSpec


def parse_source(spec: str) -> SourceSpec:
    """The typed reference for ``spec``, or ``InvalidSource`` saying what is wrong with it."""
    if not spec or len(spec) > MAX_SPEC_LENGTH:
        raise InvalidSource(f"the source must be 1 to {MAX_SPEC_LENGTH} characters long")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in spec):
        raise InvalidSource("the source contains control characters")
    if spec.startswith(("/", "./", "../")):
        return LocalSpec(url=spec, path=Path(spec))
    if spec.partition("://")[0].endswith(JOB_SCHEME_SUFFIX):
        return _job_source(spec)
    parts = urlsplit(spec)
    if parts.scheme != "https":
        raise _unsupported(spec)
    if parts.username is not None or parts.password is not None or _has_port(parts.netloc):
        raise InvalidSource(f"{spec!r}: credentials and ports do not belong in the source URL")
    host = parts.netloc.lower()
    if host in HUGGING_FACE_HOSTS:
        return _hugging_face(spec, parts.path, parts.query)
    if host in OLLAMA_HOSTS:
        return _ollama(spec, parts.path, parts.query)
    raise InvalidSource(f"{spec!r}: host {host!r} is neither huggingface.co/hf.co nor ollama.com")


def _unsupported(spec: str) -> InvalidSource:
    return InvalidSource(
        f"{spec!r} is not a supported source: use https://huggingface.co/<org>/<repo>, "
        "https://ollama.com/library/<name>[:tag], or a local path starting with / or ./"
    )


def _job_source(spec: str) -> UploadSpec | CatalogSpec:
    """The Job's own forms. Their parsers (``api.upload``, ``api.catalog_import``: pydantic
    models built at import) load only for them, not for the sources a person types."""
    from api.catalog_import import WORKER_SOURCE_SCHEME as CATALOG_SOURCE_SCHEME
    from api.upload import WORKER_SOURCE_SCHEME as UPLOAD_SOURCE_SCHEME

    if spec.startswith(f"{UPLOAD_SOURCE_SCHEME}://"):
        return _upload(spec)
    if spec.startswith(f"{CATALOG_SOURCE_SCHEME}://"):
        return _catalog(spec)
    raise _unsupported(spec)


def _upload(spec: str) -> UploadSpec:
    from api.upload import InvalidUploadSource, parse_worker_source

    try:
        found = parse_worker_source(spec)
    except InvalidUploadSource as error:
        raise InvalidSource(str(error)) from None
    return UploadSpec(
        url=spec,
        registry_host=found.registry_host,
        repository=found.repository,
        digest=found.digest,
        filename=found.filename,
        format=found.format,
    )


def _catalog(spec: str) -> CatalogSpec:
    from api.catalog_import import InvalidCatalogSource, parse_catalog_worker_source

    try:
        found = parse_catalog_worker_source(spec)
    except InvalidCatalogSource as error:
        raise InvalidSource(str(error)) from None
    return CatalogSpec(spec, found.registry_host, found.repository, found.digest)


def _has_port(netloc: str) -> bool:
    return ":" in netloc.rpartition("@")[2]


def _query(spec: str, query: str, allowed: frozenset[str]) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise InvalidSource(f"{spec!r}: malformed query string") from exc
    result: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidSource(f"{spec!r}: unknown query parameter {key!r} (supported: {known})")
        if key in result:
            raise InvalidSource(f"{spec!r}: query parameter {key!r} is given twice")
        result[key] = value
    return result


def _hugging_face(spec: str, path: str, query: str) -> HuggingFaceSpec:
    params = _query(spec, query, frozenset({"revision", "file"}))
    segments = [unquote(part) for part in path.strip("/").split("/")] if path.strip("/") else []
    repo_len = 1 if len(segments) == 1 or (len(segments) > 1 and _is_page(segments[1])) else 2
    repo_parts, rest = segments[:repo_len], segments[repo_len:]
    repo_id = _repo_id(spec, repo_parts)
    revision, gguf_file = _page_revision_and_file(spec, rest)
    if "revision" in params:
        given = _revision(spec, params["revision"])
        if revision is not None and revision != given:
            raise InvalidSource(
                f"{spec!r}: the path names revision {revision!r} but ?revision= names {given!r}"
            )
        revision = given
    if "file" in params:
        if gguf_file is not None and gguf_file != params["file"]:
            raise InvalidSource(f"{spec!r}: the path and ?file= name different files")
        gguf_file = _gguf_file(spec, params["file"])
    return HuggingFaceSpec(url=spec, repo_id=repo_id, revision=revision, gguf_file=gguf_file)


def _is_page(segment: str) -> bool:
    return segment in ("tree", *_FILE_PAGES)


def _repo_id(spec: str, parts: list[str]) -> str:
    if not parts:
        raise InvalidSource(f"{spec!r}: the URL names no repository; use /<org>/<repo>")
    if parts[0] in _NOT_MODELS:
        raise InvalidSource(f"{spec!r}: only model repositories are supported, not /{parts[0]}/")
    for part in parts:
        if not _REPO_PART.match(part) or "--" in part or ".." in part:
            raise InvalidSource(f"{spec!r}: {part!r} is not a valid repository name part")
    return "/".join(parts)


def _page_revision_and_file(spec: str, rest: list[str]) -> tuple[str | None, str | None]:
    if not rest:
        return None, None
    page, tail = rest[0], rest[1:]
    if page == "tree" and tail:
        return _revision(spec, "/".join(tail)), None
    if page in _FILE_PAGES and len(tail) >= 2:
        # refs/pr/<n> and refs/convert/<x> are the Hub's only revisions that contain slashes.
        cut = 3 if tail[0] == "refs" else 1
        if len(tail) > cut:
            revision = _revision(spec, "/".join(tail[:cut]))
            return revision, _gguf_file(spec, "/".join(tail[cut:]))
    raise InvalidSource(
        f"{spec!r}: after the repository only /tree/<revision>, /blob/<revision>/<file>.gguf or "
        "/resolve/<revision>/<file>.gguf are understood"
    )


def _revision(spec: str, revision: str) -> str:
    if (
        not _REVISION.match(revision)
        or ".." in revision
        or "//" in revision
        or revision.endswith(("/", ".lock"))
    ):
        raise InvalidSource(f"{spec!r}: {revision!r} is not a valid branch, tag or commit")
    return revision


def _gguf_file(spec: str, path: str) -> str:
    if not path.lower().endswith(".gguf"):
        raise InvalidSource(f"{spec!r}: the file selector must name a .gguf file, not {path!r}")
    parts = path.split("/")
    if (
        len(path) > 1024
        or path.startswith("/")
        or "\\" in path
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise InvalidSource(f"{spec!r}: {path!r} is not a relative path inside the repository")
    return path


def _ollama(spec: str, path: str, query: str) -> OllamaSpec:
    _query(spec, query, frozenset())
    segments = path.strip("/").split("/") if path.strip("/") else []
    if len(segments) != 2 or segments[0] != "library":
        raise InvalidSource(f"{spec!r}: use https://ollama.com/library/<name>[:tag]")
    name, colon, tag = segments[1].partition(":")
    if not _OLLAMA_NAME.match(name):
        raise InvalidSource(f"{spec!r}: {name!r} is not a valid Ollama model name")
    if colon and not _OLLAMA_TAG.match(tag):
        raise InvalidSource(f"{spec!r}: {tag!r} is not a valid Ollama tag")
    return OllamaSpec(url=spec, name=name, tag=tag or DEFAULT_OLLAMA_TAG, tag_given=bool(colon))
