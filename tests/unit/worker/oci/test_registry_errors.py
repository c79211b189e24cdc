"""The one table from the shared client's errors to the worker's reasons (and exit codes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oci import errors
from worker.errors import RegistryRejected, RegistryUnauthorized, RegistryUnavailable
from worker.oci.registry_errors import (
    RegistryAuthRefusal,
    RegistryRefusal,
    mapped_chunks,
    registry_errors,
)


@pytest.mark.parametrize(
    ("error", "reason", "permanent"),
    [
        (errors.Unauthorized("m", 403, "denied"), "RegistryUnauthorized", True),
        (errors.CredentialsInvalid("m"), "RegistryUnauthorized", True),
        (errors.Refused("m", 404, frozenset({"BLOB_UNKNOWN"})), "RegistryRejected", True),
        (errors.BadResponse("m"), "RegistryRejected", True),
        (errors.TlsFailure("m"), "RegistryRejected", True),
        (errors.Unavailable("m", 503), "RegistryUnavailable", False),
    ],
)
def test_each_client_error_has_its_reason(
    error: errors.OciError, reason: str, permanent: bool
) -> None:
    expected = (RegistryRejected, RegistryUnauthorized, RegistryUnavailable)
    with pytest.raises(expected) as caught, registry_errors():
        raise error
    assert (caught.value.reason, caught.value.permanent, caught.value.message) == (
        reason,
        permanent,
        "m",
    )
    assert caught.value.__cause__ is error


def test_refusals_keep_what_their_callers_read() -> None:
    with pytest.raises(RegistryAuthRefusal) as auth, registry_errors():
        raise errors.Unauthorized("m", 403, "not this model")
    assert (auth.value.status, auth.value.server_message) == (403, "not this model")
    with pytest.raises(RegistryRefusal) as refused, registry_errors():
        raise errors.Refused("m", 416, frozenset({"BLOB_UPLOAD_INVALID"}))
    assert (refused.value.status, refused.value.codes) == (416, frozenset({"BLOB_UPLOAD_INVALID"}))


def test_an_invalid_reference_passes_through() -> None:
    with pytest.raises(errors.InvalidReference), registry_errors():
        raise errors.InvalidReference("bad")


def test_a_stream_maps_errors_as_they_arrive() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        raise errors.Unavailable("registry connection lost")

    stream = mapped_chunks(chunks())
    assert next(stream) == b"a"
    with pytest.raises(RegistryUnavailable, match=r"^registry connection lost$"):
        next(stream)
