"""Session records for the gateway's unit tests, seeded into the fake API server."""

from __future__ import annotations

import base64
import datetime as dt

from api.upload import RECORD_KEY, SessionRecord, UploadOwner, new_token, record_name, token_sha256
from controller.kube import SECRETS
from tests.unit.controller.fakekube import EPOCH, FakeKube

SYSTEM = "ai-models-system"


def make_record(session: str, token: str, limit: int = 1 << 30) -> SessionRecord:
    return SessionRecord(
        session=session,
        owner=UploadOwner(kind="Model", namespace="ns", name="m", uid="u1"),
        token_sha256=token_sha256(token),
        expires_at=EPOCH + dt.timedelta(hours=1),
        size_limit_bytes=limit,
        staging_repository=f"ai-models/upload/{session}",
    )


def seed(kube: FakeKube, record: SessionRecord) -> None:
    encoded = base64.b64encode(record.to_json().encode()).decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": record_name(record.session), "namespace": SYSTEM},
        "data": {RECORD_KEY: encoded},
    }
    kube.seed(SECRETS, secret, SYSTEM)


def seeded(kube: FakeKube, session: str = "upload-u1") -> tuple[SessionRecord, str]:
    token = new_token(session)
    record = make_record(session, token)
    seed(kube, record)
    return record, token


def stored_record(kube: FakeKube, session: str) -> SessionRecord:
    secret = kube.stored(SECRETS, record_name(session), SYSTEM)
    assert secret is not None
    return SessionRecord.model_validate_json(base64.b64decode(secret["data"][RECORD_KEY]))
