"""The upload protocol: names, token, record, formats and the worker's source argument."""

# ruff: noqa: E501 - exact messages read best on one line

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from api import upload
from api.upload import (
    InvalidRecord,
    InvalidUploadSource,
    SessionRecord,
    UploadCommitted,
    UploadOwner,
    UploadProgress,
    UploadSource,
    parse_record,
    parse_worker_source,
    session_name,
    upload_format,
    worker_source,
)
from controller.naming import job_name

UID = "0d7d3c7e-6f4b-4b8e-9a4f-2f0c1b2a3d4e"
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
RECORD = SessionRecord(
    session=f"upload-{UID}",
    owner=UploadOwner(kind="Model", namespace="team", name="m", uid=UID),
    token_sha256="b" * 64,
    expires_at=NOW,
    size_limit_bytes=123,
    staging_repository=f"ai-models/upload/upload-{UID}",
)


def test_session_names_follow_the_job_suffix_rule() -> None:
    assert session_name(UID, None) == f"upload-{UID}"
    assert session_name(UID, "") == f"upload-{UID}"
    suffix = hashlib.sha256(b"2").hexdigest()[:8]
    assert session_name(UID, "2") == f"upload-{UID}-{suffix}"
    assert job_name(UID, "2") == f"prepare-{UID}-{suffix}"
    assert upload.record_name(session_name(UID, "2")) == f"upload-{UID}-{suffix}-state"
    assert len(upload.record_name(session_name(UID, "2"))) <= 63


def test_keys_and_label() -> None:
    assert upload.USER_SECRET_KEYS == ("url", "inClusterURL", "token")
    assert upload.RECORD_KEY == "session.json"
    assert upload.LABEL_UPLOAD_SESSION == "ai.deckhouse.io/upload-session"
    assert upload.staging_repository("ai-models", "upload-x") == "ai-models/upload/upload-x"
    assert upload.session_url("http://gw:8444/", "upload-x") == "http://gw:8444/v1/uploads/upload-x"


def test_a_token_carries_its_session_and_256_random_bits() -> None:
    session = session_name(UID, None)
    token = upload.new_token(session)
    name, _, random = token.partition(".")
    assert name == session
    assert len(random) == 43  # 32 bytes, base64url without padding
    assert upload.new_token(session) != token
    assert upload.session_of_token(token) == session
    assert upload.token_sha256(token) == hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.parametrize(
    "token", ["", "upload-x", "upload-x.", "other.abc", ".abc", "upload-x." + "a" * 300]
)
def test_a_token_of_no_session(token: str) -> None:
    assert upload.session_of_token(token) is None


def test_the_record_has_the_wire_shape_of_the_contract() -> None:
    wire = json.loads(RECORD.to_json())
    assert wire == {
        "session": f"upload-{UID}",
        "owner": {"kind": "Model", "namespace": "team", "name": "m", "uid": UID},
        "tokenSHA256": "b" * 64,
        "expiresAt": "2026-11-30T06:00:00Z",
        "sizeLimitBytes": 123,
        "stagingRepository": f"ai-models/upload/upload-{UID}",
        "upload": None,
        "committed": None,
    }
    assert parse_record(RECORD.to_json()) == RECORD


def test_a_record_with_progress_and_commit_round_trips() -> None:
    record = RECORD.model_copy(
        update={
            "upload": UploadProgress(
                filename="m.tar",
                declared_size=100,
                location="/v2/x/blobs/uploads/abc?_state=1",
                offset=40,
                bytes_per_second=1.5,
                updated_at=NOW,
            ),
            "committed": UploadCommitted(digest=DIGEST, size=100, filename="m.tar"),
        }
    )
    wire = json.loads(record.to_json())
    assert wire["upload"] == {
        "filename": "m.tar",
        "declaredSize": 100,
        "location": "/v2/x/blobs/uploads/abc?_state=1",
        "offset": 40,
        "bytesPerSecond": 1.5,
        "updatedAt": "2026-11-30T06:00:00Z",
    }
    assert wire["committed"] == {"digest": DIGEST, "size": 100, "filename": "m.tar"}
    assert parse_record(record.to_json().encode()) == record
    assert record.expired(NOW) is True
    assert record.expired(datetime(2026, 11, 30, 5, 59, tzinfo=UTC)) is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x" * (upload.MAX_RECORD_BYTES + 1), "the session record is 16385 bytes, over 16384"),
        ("[]", "the session record is malformed at the top: Input should be an object"),
        (
            RECORD.to_json().replace('"b', '"B'),
            "the session record is malformed at tokenSHA256: String should match pattern '^[0-9a-f]{64}$'",
        ),
        (
            RECORD.to_json().replace('"sizeLimitBytes":123', '"sizeLimitBytes":-1'),
            "the session record is malformed at sizeLimitBytes: Input should be greater than or equal to 0",
        ),
    ],
)
def test_a_bad_record_says_where(text: str, message: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        parse_record(text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("m.gguf", "gguf"),
        ("M.GGUF", "gguf"),
        ("model.safetensors", "safetensors"),
        ("m.tar", "tar"),
        ("m.tar.gz", "tar.gz"),
        ("m.tgz", "tar.gz"),
        ("m.tar.zst", "tar.zst"),
        ("m.zip", "zip"),
        ("m.gz", None),
        ("m.zst", None),
        ("m.bin", None),
        (".gguf", None),
        ("m", None),
    ],
)
def test_formats(name: str, expected: str | None) -> None:
    assert upload_format(name) == expected


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("m.gguf", True),
        ("ä" * 127 + ".", True),
        ("ä" * 128, False),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b.gguf", False),
        ("a\\b.gguf", False),
        ("a\nb.gguf", False),
        ("a\x00.gguf", False),
    ],
)
def test_safe_filenames(name: str, safe: bool) -> None:
    assert upload.is_safe_filename(name) is safe


def test_error_codes_each_have_a_status() -> None:
    assert set(upload.ERROR_STATUS) == upload.ERROR_CODES
    assert upload.ERROR_STATUS["TooLarge"] == 413
    assert upload.ErrorBody(code="NoUpload", message="m").to_wire() == {
        "code": "NoUpload",
        "message": "m",
    }


def test_the_worker_source_round_trips() -> None:
    spec = worker_source("registry.local:5000", "ai-models/upload/upload-x", DIGEST, "my m.tar.gz")
    assert (
        spec
        == f"upload+oci://registry.local:5000/ai-models/upload/upload-x@{DIGEST}?filename=my%20m.tar.gz"
    )
    parsed = parse_worker_source(spec)
    assert parsed == UploadSource(
        "registry.local:5000", "ai-models/upload/upload-x", DIGEST, "my m.tar.gz"
    )
    assert parsed.format == "tar.gz"


@pytest.mark.parametrize(
    "spec",
    [
        f"oci://r/a@{DIGEST}?filename=m.gguf",
        f"upload+oci:///a@{DIGEST}?filename=m.gguf",
        "upload+oci://r/a@sha256:abc?filename=m.gguf",
        f"upload+oci://r/A@{DIGEST}?filename=m.gguf",
        f"upload+oci://r/a{DIGEST}?filename=m.gguf",
        f"upload+oci://r/a@{DIGEST}",
        f"upload+oci://r/a@{DIGEST}?filename=m.gguf&filename=n.gguf",
        f"upload+oci://r/a@{DIGEST}?filename=m.gguf&x=1",
        f"upload+oci://r/a@{DIGEST}?filename=m.exe",
        f"upload+oci://r/a@{DIGEST}?filename=..%2Fm.gguf",
        f"upload+oci://r/a@{DIGEST}?filename=m.gguf#x",
        f"upload+oci://r/a@{DIGEST}?filename",
    ],
)
def test_a_bad_worker_source_is_refused(spec: str) -> None:
    with pytest.raises(InvalidUploadSource):
        parse_worker_source(spec)
