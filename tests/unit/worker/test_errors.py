"""The worker's error tree: reasons, permanence, exit codes and termination messages."""

from __future__ import annotations

import json

import pytest

from worker import errors
from worker.errors import (
    MAX_TERMINATION_MESSAGE_BYTES,
    InvalidWeights,
    PermanentError,
    RegistryUnavailable,
    TransientError,
    WorkerError,
)

PERMANENT = [
    "SourceNotFound",
    "SourceUnauthorized",
    "RevisionNotFound",
    "NoSupportedWeights",
    "AmbiguousFormat",
    "InvalidWeights",
    "UploadRejected",
]
TRANSIENT = ["SourceUnavailable", "RegistryUnavailable"]


def _leaf(name: str) -> type[WorkerError]:
    cls = getattr(errors, name)
    assert isinstance(cls, type)
    assert issubclass(cls, WorkerError)
    return cls


@pytest.mark.parametrize("name", PERMANENT)
def test_permanent_errors_are_named_after_their_reason(name: str) -> None:
    cls = _leaf(name)
    assert (cls.reason, cls.permanent, issubclass(cls, PermanentError)) == (name, True, True)
    assert cls("x").exit_code == 2


@pytest.mark.parametrize("name", TRANSIENT)
def test_transient_errors_are_named_after_their_reason(name: str) -> None:
    cls = _leaf(name)
    assert (cls.reason, cls.permanent, issubclass(cls, TransientError)) == (name, False, True)
    assert cls("x").exit_code == 1


def test_every_leaf_is_named_after_its_reason_and_classified() -> None:
    leaves = {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, WorkerError)
        and value not in (WorkerError, PermanentError, TransientError)
    }
    assert set(PERMANENT + TRANSIENT) <= set(leaves)
    for name, cls in leaves.items():
        assert cls.reason == name
        assert issubclass(cls, PermanentError) != issubclass(cls, TransientError)
        assert cls.permanent is issubclass(cls, PermanentError)


def test_termination_message_is_the_reason_and_message() -> None:
    error = RegistryUnavailable("registry answered 503; retrying")
    assert error.to_termination_message() == {
        "reason": "RegistryUnavailable",
        "message": "registry answered 503; retrying",
    }
    assert str(error) == "registry answered 503; retrying"


@pytest.mark.parametrize("text", ["a" * 10_000, "é" * 10_000, "\U0001f600" * 5000, "\n" * 5000])
def test_long_messages_are_cut_to_fit_the_termination_log(text: str) -> None:
    message = InvalidWeights(text).to_termination_message()
    assert message["message"].endswith(" …(truncated)")
    assert message["message"].startswith(text[:100])
    # The kubelet keeps 4096 bytes of /dev/termination-log, however the JSON is written.
    assert len(json.dumps(message).encode()) <= 4096
    assert len(json.dumps(message, ensure_ascii=False).encode()) <= 4096
    # ...and the cut keeps as much as fits.
    assert len(json.dumps(message["message"])) > MAX_TERMINATION_MESSAGE_BYTES - 20


def test_short_messages_are_kept_whole() -> None:
    text = "x" * 3000
    assert InvalidWeights(text).to_termination_message()["message"] == text
