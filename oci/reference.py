"""OCI references: ``[http://|https://]host[:port]/repository[:tag][@sha256:<hex>]``.

The host is always explicit (there is no default registry: nothing may push to a public one
by accident). The grammar follows the distribution spec: lower-case path components
separated by ``/``, a tag of at most 128 word characters, dots and dashes, a sha256 digest. A
scheme prefix says how to talk to the registry; ``http://`` is the explicit opt-in to plain HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from oci.digest import DIGEST_PATTERN
from oci.errors import InvalidReference

MAX_REPOSITORY_LENGTH = 255
"""The distribution registry's limit for a repository name."""

_HOST = re.compile(
    r"^(localhost|\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+)(:[0-9]{1,5})?$|^[a-zA-Z0-9-]+:[0-9]{1,5}$"
)
_COMPONENT = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

Scheme = Literal["https", "http"]


@dataclass(frozen=True)
class Reference:
    registry: str
    """``host[:port]`` as written."""
    repository: str
    tag: str | None = None
    digest: str | None = None
    scheme: Scheme | None = None
    """The scheme written before the host, when one was."""

    @property
    def name(self) -> str:
        """``host[:port]/repository``, the repository's full name."""
        return f"{self.registry}/{self.repository}"

    def with_digest(self, digest: str) -> Reference:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parses ``text`` or raises ``InvalidReference`` saying which part is wrong."""
    scheme: Scheme | None = None
    rest = text.strip()
    for prefix in ("https://", "http://"):
        if rest.startswith(prefix):
            scheme = "https" if prefix == "https://" else "http"
            rest = rest[len(prefix) :]
    host, slash, path = rest.partition("/")
    if not slash or not path:
        raise InvalidReference(f"{text!r}: expected host[:port]/repository[:tag][@digest]")
    if not _HOST.match(host):
        raise InvalidReference(f"{text!r}: {host!r} is not a registry host[:port]")
    path, digest = _split_digest(text, path)
    repository, tag = _split_tag(text, path)
    _check_repository(text, repository)
    return Reference(host, repository, tag, digest, scheme)


def _split_digest(text: str, path: str) -> tuple[str, str | None]:
    path, at, digest = path.partition("@")
    if not at:
        return path, None
    if not DIGEST_PATTERN.match(digest):
        raise InvalidReference(f"{text!r}: {digest!r} is not a sha256:<64 hex> digest")
    return path, digest


def _split_tag(text: str, path: str) -> tuple[str, str | None]:
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon <= last_slash:
        return path, None
    tag = path[colon + 1 :]
    if not TAG_PATTERN.match(tag):
        raise InvalidReference(f"{text!r}: {tag!r} is not a valid tag")
    return path[:colon], tag


def _check_repository(text: str, repository: str) -> None:
    if len(repository) > MAX_REPOSITORY_LENGTH:
        raise InvalidReference(
            f"{text!r}: the repository name has {len(repository)} characters, "
            f"more than the registry limit of {MAX_REPOSITORY_LENGTH}"
        )
    for component in repository.split("/"):
        if not _COMPONENT.match(component):
            raise InvalidReference(
                f"{text!r}: repository component {component!r} must be lower-case letters and "
                "digits separated by '.', '_', '__' or '-'"
            )
