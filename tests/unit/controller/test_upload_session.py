"""Upload sessions over the in-memory API server: a session is issued once — a restarted
controller adopts what it created and never hands out a second token —, its token is 256 bits
of which only the hash is stored, the gateway's progress is mirrored into the status, expiry
fails the object and cleans up, a committed upload becomes the Job's source, and Ready, Failed,
deletion and retries end the session (Secrets, record, staging blob)."""

# ruff: noqa: E501 - exact messages read best on one line

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from api import upload
from api.upload import SessionRecord, UploadCommitted, UploadProgress
from controller import naming
from controller.config import UploadConfig
from controller.errors import ApiUnavailable, Conflict, RegistryError
from controller.kube import CLUSTER_MODELS, JOBS, MODELS, SECRETS
from controller.naming import ObjectKey
from controller.reconciler import QUEUED_RECHECK_SECONDS
from controller.slots import needs_slot
from controller.uploads import read_record
from tests.unit.controller.fakekube import EPOCH
from tests.unit.controller.rig import GATEWAY, JOB, SYSTEM, UID, Rig, model

JSON = dict[str, Any]
SESSION = f"upload-{UID}"
RECORD = f"{SESSION}-state"
STAGING = f"ai-models/upload/{SESSION}"
EXPIRES = "2026-01-03T03:04:05Z"  # the fake clock's start + 86400 s
DIGEST = "sha256:" + "e" * 64
MIB = 1 << 20
WAITING = f"waiting for an upload: kubectl get secret -n team-a {SESSION} has the URL and token (expires {EXPIRES})"
RESULT = {
    "artifact": {
        "kind": "OCI",
        "digest": "sha256:" + "d" * 64,
        "mediaType": "application/vnd.cncf.model.manifest.v1+json",
        "sizeBytes": 3 << 20,
    },
    "resolved": {"architecture": "BertModel", "format": "Safetensors", "parameterCount": 7},
    "source": {"resolvedType": "Upload", "resolvedRevision": DIGEST},
}


class Blobs:
    """The registry's blob DELETE, recorded; ``error`` makes it fail."""

    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []
        self.error: RegistryError | None = None

    def delete_blob(self, repository: str, digest: str) -> bool:
        if self.error is not None:
            raise self.error
        self.deleted.append((repository, digest))
        return True


def upload_model(name: str = "private-model", retry: str | None = None) -> JSON:
    obj = model(auth_secret=None, name=name)
    obj["spec"]["source"] = {"upload": {}}
    if retry is not None:
        obj["metadata"]["annotations"][naming.RETRY_ANNOTATION] = retry
    return obj


def rig_with_upload(**settings: Any) -> tuple[Rig, Blobs]:
    blobs = Blobs()
    config = UploadConfig(in_cluster_url=GATEWAY, **settings)
    rig = Rig(blobs=blobs, upload=config)
    rig.add(upload_model())
    return rig, blobs


def decoded(secret: JSON) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def user_secret(rig: Rig, name: str = SESSION, namespace: str = "team-a") -> JSON | None:
    return rig.kube.stored(SECRETS, name, namespace)


def record(rig: Rig, name: str = RECORD) -> SessionRecord:
    secret = rig.kube.stored(SECRETS, name, SYSTEM)
    assert secret is not None
    return read_record(secret)


def gateway_writes(rig: Rig, **update: Any) -> None:
    """The gateway's write to the record (the controller's informer then sees it)."""
    secret = rig.kube.stored(SECRETS, RECORD, SYSTEM)
    assert secret is not None
    changed = read_record(secret).model_copy(update=update)
    secret["data"] = {upload.RECORD_KEY: base64.b64encode(changed.to_json().encode()).decode()}
    rig.kube.seed(SECRETS, secret, SYSTEM)


def progress(offset: int, declared: int | None, rate: float, age: float = 0.0) -> UploadProgress:
    return UploadProgress(
        filename="model.tar",
        declared_size=declared,
        location="/v2/x/blobs/uploads/1",
        offset=offset,
        bytes_per_second=rate,
        updated_at=EPOCH + dt.timedelta(seconds=age),
    )


def committed(filename: str = "m.tar.gz") -> UploadCommitted:
    return UploadCommitted(digest=DIGEST, size=87 * MIB, filename=filename)


def ready_message(rig: Rig) -> str:
    return str(rig.ready()["message"])


# ---- issue -----------------------------------------------------------------------------------


def test_a_session_is_issued_with_a_256_bit_token_whose_hash_alone_is_stored() -> None:
    rig, _ = rig_with_upload()
    with capture_logs() as logs:
        assert rig.reconcile() == 86400.0
    assert rig.calls() == [
        f"create secrets team-a/{SESSION}",
        f"get secrets {SYSTEM}/{RECORD}",
        f"create secrets {SYSTEM}/{RECORD}",
        "replace models/status team-a/private-model",
    ]
    secret = user_secret(rig)
    assert secret is not None
    values = decoded(secret)
    token = values.pop("token")
    assert values == {
        "url": f"{GATEWAY}/v1/uploads/{SESSION}",
        "inClusterURL": f"{GATEWAY}/v1/uploads/{SESSION}",
    }
    session, _, random = token.partition(".")
    assert session == SESSION
    assert len(base64.urlsafe_b64decode(random + "=")) == 32
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "ai-models",
        "ai.deckhouse.io/owner-kind": "Model",
        "ai.deckhouse.io/owner-uid": UID,
    }
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "ai.deckhouse.io/v1alpha1",
            "kind": "Model",
            "name": "private-model",
            "uid": UID,
            "blockOwnerDeletion": False,
        }
    ]
    state = rig.kube.stored(SECRETS, RECORD, SYSTEM)
    assert state is not None
    assert state["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "ai-models",
        "ai.deckhouse.io/upload-session": SESSION,
        "ai.deckhouse.io/owner-kind": "Model",
        "ai.deckhouse.io/owner-uid": UID,
    }
    assert state["metadata"]["annotations"] == {
        "ai.deckhouse.io/owner-namespace": "team-a",
        "ai.deckhouse.io/owner-name": "private-model",
    }
    assert "ownerReferences" not in state["metadata"]  # a Model cannot own across namespaces
    assert json.loads(base64.b64decode(state["data"]["session.json"])) == {
        "session": SESSION,
        "owner": {"kind": "Model", "namespace": "team-a", "name": "private-model", "uid": UID},
        "tokenSHA256": hashlib.sha256(token.encode()).hexdigest(),
        "expiresAt": EXPIRES,
        "sizeLimitBytes": 200 << 30,
        "stagingRepository": STAGING,
        "upload": None,
        "committed": None,
    }
    status = rig.obj()["status"]
    assert status["phase"] == "WaitForUpload"
    assert status["upload"] == {
        "secretName": SESSION,
        "secretNamespace": "team-a",
        "expiresAt": EXPIRES,
    }
    assert "progress" not in status
    assert rig.ready() == {
        "type": "Ready",
        "status": "False",
        "reason": "WaitForUpload",
        "message": WAITING,
        "observedGeneration": 1,
        "lastTransitionTime": "2026-01-02T03:04:05Z",
    }
    assert rig.events() == [("Normal", "WaitForUpload", WAITING)]
    assert rig.kube.objects(JOBS) == []
    seen = json.dumps([logs, rig.kube.objects(MODELS), rig.events()], default=str)
    assert random not in seen
    # Nothing changed: nothing is written, the expiry is the next look.
    rig.kube.calls.clear()
    rig.clock.advance(400)
    assert rig.reconcile() == 86000.0
    rig.caches.upload_records.hidden.add(RECORD)  # the informer lags: the status stays
    assert rig.reconcile() == 86000.0
    assert rig.kube.calls == []


def test_a_restarted_controller_adopts_the_session_and_issues_no_second_token() -> None:
    rig, _ = rig_with_upload()
    rig.kube.fail("replace", MODELS, ApiUnavailable(503, "ServiceUnavailable", "down"))
    with pytest.raises(ApiUnavailable):
        rig.reconcile()  # Secrets created, the status not written: as if the controller died
    secret, state = user_secret(rig), rig.kube.stored(SECRETS, RECORD, SYSTEM)
    rig.kube.calls.clear()
    rig.clock.advance(60)
    assert rig.reconcile() == 86340.0
    assert rig.calls() == [
        f"create secrets team-a/{SESSION}",  # 409: kept
        f"get secrets {SYSTEM}/{RECORD}",
        "replace models/status team-a/private-model",
    ]
    assert user_secret(rig) == secret
    assert rig.kube.stored(SECRETS, RECORD, SYSTEM) == state
    assert rig.obj()["status"]["upload"]["expiresAt"] == EXPIRES


def test_a_user_secret_left_without_a_record_is_replaced_with_a_new_token() -> None:
    """Stopped between the two creations: nobody was told that token; a new one replaces it,
    and the record holds its hash."""
    rig, _ = rig_with_upload()
    rig.kube.fail("create", SECRETS, ApiUnavailable(503, "ServiceUnavailable", "down"), name=RECORD)
    with pytest.raises(ApiUnavailable):
        rig.reconcile()
    first = decoded(user_secret(rig) or {})["token"]
    rig.kube.calls.clear()
    rig.reconcile()
    assert rig.calls() == [
        f"create secrets team-a/{SESSION}",
        f"get secrets {SYSTEM}/{RECORD}",
        f"delete secrets team-a/{SESSION}",
        f"create secrets team-a/{SESSION}",
        f"create secrets {SYSTEM}/{RECORD}",
        "replace models/status team-a/private-model",
    ]
    token = decoded(user_secret(rig) or {})["token"]
    assert token != first
    assert record(rig).token_sha256 == upload.token_sha256(token)


def test_a_record_of_an_earlier_token_is_rewritten_for_the_new_one() -> None:
    rig, _ = rig_with_upload()
    rig.reconcile()
    state = rig.kube.stored(SECRETS, RECORD, SYSTEM)
    rig.kube.drop(SECRETS, SESSION, "team-a")
    rig.kube.set_status(MODELS, "private-model", "team-a", {})  # as if never written
    rig.reconcile()
    token = decoded(user_secret(rig) or {})["token"]
    assert record(rig).token_sha256 == upload.token_sha256(token)
    assert rig.calls()[-2:] == [
        f"patch secrets {SYSTEM}/{RECORD}",
        "replace models/status team-a/private-model",
    ]
    replaced = rig.kube.calls_of("patch", SECRETS)[-1].body or {}
    assert state is not None
    assert replaced["metadata"]["resourceVersion"] == state["metadata"]["resourceVersion"]


def test_a_user_secret_that_comes_back_at_once_is_a_conflict() -> None:
    rig, _ = rig_with_upload()
    rig.kube.fail("create", SECRETS, ApiUnavailable(503, "ServiceUnavailable", "down"), name=RECORD)
    with pytest.raises(ApiUnavailable):
        rig.reconcile()
    rig.kube.fail(
        "create", SECRETS, Conflict(409, "AlreadyExists", "exists"), times=2, name=SESSION
    )
    with pytest.raises(Conflict, match=f"Secret team-a/{SESSION} came back"):
        rig.reconcile()


def test_a_cluster_model_session_lives_in_the_system_namespace_and_the_external_url_is_the_url() -> (
    None
):
    blobs = Blobs()
    external = "https://uploads.example.com/ai"
    rig = Rig(blobs=blobs, upload=UploadConfig(in_cluster_url=GATEWAY, external_url=external))
    obj = upload_model()
    obj["kind"] = "ClusterModel"
    del obj["metadata"]["namespace"]
    key = rig.add(obj)
    assert key == ObjectKey("ClusterModel", "", "private-model")
    rig.reconcile(key)
    secret = user_secret(rig, namespace=SYSTEM)
    assert secret is not None
    assert decoded(secret)["url"] == f"{external}/v1/uploads/{SESSION}"
    assert decoded(secret)["inClusterURL"] == f"{GATEWAY}/v1/uploads/{SESSION}"
    state = rig.kube.stored(SECRETS, RECORD, SYSTEM)
    assert state is not None
    assert state["metadata"]["annotations"]["ai.deckhouse.io/owner-namespace"] == ""
    assert state["metadata"]["ownerReferences"][0]["kind"] == "ClusterModel"
    assert rig.obj(key)["status"]["upload"]["secretNamespace"] == SYSTEM
    assert rig.kube.stored(CLUSTER_MODELS, "private-model") is not None


def test_without_the_gateway_the_object_waits_with_a_clear_reason() -> None:
    rig = Rig(upload=UploadConfig())
    rig.add(upload_model())
    assert rig.reconcile() is None
    assert rig.obj()["status"]["phase"] == "Pending"
    assert (rig.ready()["reason"], rig.ready()["message"]) == (
        "UploadGatewayNotConfigured",
        "upload sessions need the upload gateway, and the controller's configuration has no "
        "upload.inClusterURL (the chart sets it when the gateway is installed)",
    )
    assert rig.kube.objects(SECRETS) == []


# ---- progress and expiry ---------------------------------------------------------------------


def test_the_gateways_progress_is_mirrored_never_100_percent_before_ready() -> None:
    rig, _ = rig_with_upload()
    rig.reconcile()
    gateway_writes(rig, upload=progress(37 * MIB, 87 * MIB, 12.0 * MIB))
    assert rig.reconcile() == 30.0  # to drop the rate once it is stale
    assert rig.obj()["status"]["progress"] == "42%"
    assert ready_message(rig) == "uploading: 37.0 MiB of 87.0 MiB, 12.0 MiB/s"
    assert rig.ready()["reason"] == "WaitForUpload"
    rig.clock.advance(31)  # the client stopped sending: the rate is no longer current
    assert rig.reconcile() == 86400.0 - 31
    assert ready_message(rig) == "uploading: 37.0 MiB of 87.0 MiB"
    gateway_writes(rig, upload=progress(87 * MIB, 87 * MIB, 0.0, age=31))
    rig.reconcile()
    assert rig.obj()["status"]["progress"] == "99%"
    gateway_writes(rig, upload=progress(5 * MIB, None, 1.0 * MIB, age=31))
    rig.reconcile()
    assert "progress" not in rig.obj()["status"]
    assert ready_message(rig) == "uploading: 5.0 MiB, 1.0 MiB/s"
    assert rig.obj()["status"]["upload"]["secretName"] == SESSION


def test_an_expired_session_fails_says_how_to_retry_and_is_cleaned_up() -> None:
    rig, blobs = rig_with_upload()
    rig.reconcile()
    gateway_writes(rig, upload=progress(37 * MIB, 87 * MIB, 12.0 * MIB))
    rig.clock.advance(86400)
    with capture_logs() as logs:
        assert rig.reconcile() is None
    status = rig.obj()["status"]
    message = (
        f"the upload session expired at {EXPIRES} before an upload was committed; set a new "
        "value of the ai.deckhouse.io/retry annotation for a new session"
    )
    assert (status["phase"], rig.ready()["reason"], ready_message(rig)) == (
        "Failed",
        "UploadExpired",
        message,
    )
    assert "upload" not in status
    assert "progress" not in status
    assert user_secret(rig) is None
    assert rig.kube.stored(SECRETS, RECORD, SYSTEM) is None
    assert blobs.deleted == []  # nothing was committed
    assert rig.events()[-1] == ("Warning", "UploadExpired", message)
    assert [e["event"] for e in logs if e["log_level"] == "info"] == ["upload session expired"]
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []  # Failed is final for this retry value


def test_a_new_retry_value_after_failed_issues_a_new_session() -> None:
    rig, _ = rig_with_upload()
    rig.reconcile()
    old_token = decoded(user_secret(rig) or {})["token"]
    rig.clock.advance(86400)
    rig.reconcile()
    obj = rig.obj()
    obj["metadata"]["annotations"][naming.RETRY_ANNOTATION] = "1"
    rig.kube.seed(MODELS, obj, "team-a")
    assert rig.reconcile() == 86400.0
    session = f"{SESSION}-{hashlib.sha256(b'1').hexdigest()[:8]}"
    assert session == upload.session_name(UID, "1")
    assert rig.obj()["status"]["phase"] == "WaitForUpload"
    assert rig.obj()["status"]["upload"]["secretName"] == session
    token = decoded(user_secret(rig, session) or {})["token"]
    assert token.startswith(f"{session}.")
    assert token != old_token
    assert record(rig, f"{session}-state").token_sha256 == upload.token_sha256(token)
    assert user_secret(rig) is None  # the first session stays gone


# ---- committed: the Job, its verdict, the end of the session --------------------------------


def committed_and_started(filename: str = "m.tar.gz") -> tuple[Rig, Blobs]:
    rig, blobs = rig_with_upload()
    rig.reconcile()
    gateway_writes(rig, upload=progress(87 * MIB, 87 * MIB, 0.0), committed=committed(filename))
    assert rig.reconcile() is None
    return rig, blobs


def test_a_committed_upload_becomes_the_jobs_source_mounted_from_staging() -> None:
    rig, _ = committed_and_started("my model.tar.gz")
    job = rig.kube.stored(JOBS, JOB, SYSTEM)
    assert job is not None
    container = job["spec"]["template"]["spec"]["containers"][0]
    source = f"upload+oci://ai-models-registry.d8-ai-models.svc:5000/{STAGING}@{DIGEST}?filename=my%20model.tar.gz"
    assert container["args"][:2] == ["prepare", source]
    assert upload.parse_worker_source(source).filename == "my model.tar.gz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AI_MODELS_MOUNT_FROM"] == STAGING
    # The default size limit (200 GiB) times 4: the unpacker's bound on what the archive expands to.
    assert env["AI_MODELS_UPLOAD_MAX_EXPANDED_BYTES"] == str(800 << 30)
    status = rig.obj()["status"]
    assert status["phase"] == "Publishing"
    assert status["upload"]["secretName"] == SESSION
    assert rig.events()[-1] == (
        "Normal",
        "PreparationStarted",
        f"preparing the upload my model.tar.gz ({DIGEST}) in Job {SYSTEM}/{JOB}",
    )
    assert rig.reconcile() is None  # the Job exists: the usual mirror
    assert rig.calls(JOBS) == [f"create jobs {SYSTEM}/{JOB}"]


def test_ready_ends_the_session_secrets_record_and_staging_blob() -> None:
    rig, blobs = committed_and_started()
    result = {naming.ANNOTATION_RESULT: json.dumps(RESULT)}
    rig.pod(1, "Succeeded", exit_code=0, annotations=result)
    rig.job_status(conditions=[{"type": "Complete", "status": "True"}], succeeded=1)
    assert rig.reconcile() is None
    status = rig.obj()["status"]
    assert status["phase"] == "Ready"
    assert "upload" not in status
    assert status["source"] == {"resolvedType": "Upload", "resolvedRevision": DIGEST}
    assert blobs.deleted == [(STAGING, DIGEST)]
    assert user_secret(rig) is None
    assert rig.kube.stored(SECRETS, RECORD, SYSTEM) is None
    rig.kube.calls.clear()
    assert rig.reconcile() is None
    assert rig.kube.calls == []


def test_a_registry_that_keeps_the_staging_blob_does_not_hold_ready_back() -> None:
    rig, blobs = committed_and_started()
    blobs.error = RegistryError("DELETE blob: registry answered 405 UNSUPPORTED")
    rig.pod(1, "Succeeded", exit_code=0, annotations={naming.ANNOTATION_RESULT: json.dumps(RESULT)})
    rig.job_status(conditions=[{"type": "Complete", "status": "True"}], succeeded=1)
    rig.reconcile()
    assert rig.obj()["status"]["phase"] == "Ready"
    assert user_secret(rig) is None
    assert rig.events()[-2] == (
        "Warning",
        "UploadCleanupIncomplete",
        f"the staging blob of {RECORD} stays: DELETE blob: registry answered 405 UNSUPPORTED",
    )


def test_a_failed_job_ends_the_session_too() -> None:
    rig, blobs = committed_and_started()
    why = json.dumps({"reason": "UploadRejected", "message": "member ../x", "log": []})
    rig.pod(1, "Failed", exit_code=2, message=why)
    rig.job_status(conditions=[{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}])
    rig.reconcile()
    assert (rig.obj()["status"]["phase"], rig.ready()["reason"]) == ("Failed", "UploadRejected")
    assert "upload" not in rig.obj()["status"]
    assert blobs.deleted == [(STAGING, DIGEST)]
    assert user_secret(rig) is None


def test_a_session_whose_end_was_not_written_is_ended_on_the_next_look() -> None:
    rig, blobs = committed_and_started()
    status = {**rig.obj()["status"], "phase": "Ready"}  # an older controller wrote Ready
    rig.kube.set_status(MODELS, "private-model", "team-a", status)
    rig.kube.drop(JOBS, JOB, SYSTEM)
    rig.reconcile()
    assert "upload" not in rig.obj()["status"]
    assert rig.obj()["status"]["phase"] == "Ready"
    assert blobs.deleted == [(STAGING, DIGEST)]
    assert user_secret(rig) is None


def test_deletion_ends_the_session() -> None:
    rig, blobs = committed_and_started()
    rig.kube.delete(MODELS, "private-model", "team-a")
    assert rig.reconcile() is None
    assert rig.kube.stored(MODELS, "private-model", "team-a") is None
    assert blobs.deleted == [(STAGING, DIGEST)]
    assert user_secret(rig) is None
    assert rig.kube.stored(SECRETS, RECORD, SYSTEM) is None


def test_deletion_waits_for_the_registry_to_unlink_the_staging_blob() -> None:
    rig, blobs = committed_and_started()
    blobs.error = RegistryError("registry down")
    rig.kube.delete(MODELS, "private-model", "team-a")
    with pytest.raises(RegistryError):
        rig.reconcile()
    assert rig.kube.stored(MODELS, "private-model", "team-a") is not None
    blobs.error = None
    assert rig.reconcile() is None
    assert rig.kube.stored(MODELS, "private-model", "team-a") is None


def test_an_unreadable_record_is_ignored_until_expiry() -> None:
    rig, _ = rig_with_upload()
    rig.reconcile()
    secret = rig.kube.stored(SECRETS, RECORD, SYSTEM)
    assert secret is not None
    secret["data"] = {upload.RECORD_KEY: base64.b64encode(b"{not json").decode()}
    rig.kube.seed(SECRETS, secret, SYSTEM)
    with capture_logs() as logs:
        assert rig.reconcile() == 86400.0
    assert ready_message(rig) == WAITING
    assert logs[0]["event"] == "unreadable upload session record"
    for bad in ("%%%", "A" * (2 * upload.MAX_RECORD_BYTES + 4)):
        secret["data"] = {upload.RECORD_KEY: bad}
        rig.kube.seed(SECRETS, secret, SYSTEM)
        assert rig.reconcile() == 86400.0
    rig.kube.delete(MODELS, "private-model", "team-a")
    assert rig.reconcile() is None  # no digest to unlink: the Secrets go all the same
    assert rig.kube.stored(SECRETS, RECORD, SYSTEM) is None


def test_an_upload_takes_a_slot_only_once_queued() -> None:
    def obj(phase: str, reason: str) -> JSON:
        found = upload_model()
        found["status"] = {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "False", "reason": reason}],
        }
        return found

    assert needs_slot(obj("WaitForUpload", "WaitForUpload")) is False
    assert needs_slot(obj("Pending", "UploadGatewayNotConfigured")) is False
    assert needs_slot(obj("Pending", "Queued")) is True


def test_a_committed_upload_waits_for_a_slot() -> None:
    rig = Rig(max_concurrent=1, blobs=Blobs(), upload=UploadConfig(in_cluster_url=GATEWAY))
    rig.add(model(auth_secret=None, name="busy", uid="uid-busy"))
    rig.reconcile(ObjectKey("Model", "team-a", "busy"))
    rig.add(upload_model())
    rig.reconcile()
    gateway_writes(rig, committed=committed())
    assert rig.reconcile() == QUEUED_RECHECK_SECONDS
    assert (rig.obj()["status"]["phase"], rig.ready()["reason"]) == ("Pending", "Queued")
    assert rig.obj()["status"]["upload"]["secretName"] == SESSION
    rig.job_status("prepare-uid-busy", conditions=[{"type": "Complete", "status": "True"}])
    assert rig.reconcile() is None
    assert rig.kube.stored(JOBS, JOB, SYSTEM) is not None
