"""A ``spec.source.catalog`` Model on the fake API: resolution reasons (Pending, rechecked when a
catalog changes), the grant asked only with a slot, the per-Job grant Secret in the system
namespace (the tokens in no argument, env value, status or Event), ``status.source`` frozen at
import and kept by the Ready status."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from api.catalog_import import parse_grant_file
from api.catalog_protocol import CatalogEntry, Grant
from api.model import ResolvedMetadata
from controller import naming
from controller.catalog_import import CatalogImports
from controller.catalogs import CatalogStore
from controller.errors import CatalogUnauthorized
from controller.events import EventRecorder
from controller.kube import EVENTS, JOBS, MODEL_CATALOG_SOURCES, MODELS, SECRETS
from controller.reconciler import Reconciler
from tests.unit.controller.rig import JOB, KEY, NOW, SYSTEM, UID, Rig, model

JSON = dict[str, Any]
DIGEST = "sha256:" + "c" * 64
CATALOG_TOKEN = "catalog-token-b"
GRANT_TOKEN = "grant-token-1"
AT = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def entry(name: str = "tiny", version: str = "1", active: bool = True) -> CatalogEntry:
    return CatalogEntry(
        name=name, version=version, active=active, repository="catalog.a:8443/ai-models/tiny",
        digest=DIGEST, size_bytes=10, resolved=ResolvedMetadata(format="GGUF"),
    )  # fmt: skip


class FakeCatalog:
    def __init__(self) -> None:
        self.grants: list[tuple[str, str, str]] = []
        self.clients: list[tuple[str, str, Path | None]] = []
        self.refuse = False

    def __call__(self, url: str, token: str, ca_file: Path | None) -> FakeCatalog:
        self.clients.append((url, token, ca_file))
        return self

    def grant(self, name: str, version: str, digest: str) -> Grant:
        if self.refuse:
            raise CatalogUnauthorized("POST https://catalog.a/v1/grants: answered 401")
        self.grants.append((name, version, digest))
        return Grant(
            registry="catalog.a:8443", repository="ai-models/tiny", token=GRANT_TOKEN,
            expires_at=AT,
        )  # fmt: skip


class CatalogRig(Rig):
    def __init__(self, max_concurrent: int = 2) -> None:
        super().__init__(max_concurrent=max_concurrent)
        self.store = CatalogStore()
        self.catalog = FakeCatalog()
        imports = CatalogImports(
            self.kube, self.caches.catalog_sources, self.store, "d8-system", client=self.catalog
        )
        self.reconciler = Reconciler(
            self.kube, self.caches, self.config, self.dispatcher, self.finalizer,
            EventRecorder(self.kube), self.uploads, self.clock.rfc3339, jitter=lambda: 0.5,
            catalogs=imports,
        )  # fmt: skip
        self.kube.seed(
            SECRETS,
            {"metadata": {"name": "catalog-creds"}, "type": "Opaque",
             "data": {"token": base64.b64encode(CATALOG_TOKEN.encode()).decode()}},
            "d8-system",
        )  # fmt: skip

    def source(self, name: str, *entries: CatalogEntry, revision: str = "rev1") -> None:
        spec = {"url": f"https://{name}.example/", "credentialsSecretName": "catalog-creds"}
        self.kube.seed(MODEL_CATALOG_SOURCES, {"metadata": {"name": name}, "spec": spec}, None)
        self.store.put(name, revision, entries, AT)


def catalog_model(**ref: str) -> JSON:
    obj = model(auth_secret=None)
    obj["spec"]["source"] = {"catalog": {"name": "tiny", **ref}}
    return obj


def test_a_resolved_entry_becomes_a_job_with_a_grant_secret_and_frozen_provenance() -> None:
    rig = CatalogRig()
    rig.source("central", entry(), entry("other"))
    rig.add(catalog_model())
    assert rig.reconcile() is None

    assert rig.catalog.clients == [("https://central.example", CATALOG_TOKEN, None)]
    assert rig.catalog.grants == [("tiny", "1", DIGEST)]
    grant_secret = f"{JOB}-catalog-grant"
    assert rig.names(SECRETS) == [grant_secret]
    secret = rig.kube.stored(SECRETS, grant_secret, SYSTEM)
    assert secret is not None
    assert secret["metadata"]["labels"][naming.LABEL_OWNER_UID] == UID
    assert secret["metadata"]["ownerReferences"][0]["name"] == JOB
    grant = parse_grant_file(base64.b64decode(secret["data"]["grant.json"]))
    assert (grant.token, grant.catalog_token, grant.catalog_url) == (
        GRANT_TOKEN, CATALOG_TOKEN, "https://central.example",
    )  # fmt: skip
    assert (grant.source_name, grant.catalog_revision, grant.digest) == ("central", "rev1", DIGEST)

    job = rig.kube.stored(JOBS, JOB, SYSTEM)
    assert job is not None
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][1] == f"catalog+oci://catalog.a:8443/ai-models/tiny@{DIGEST}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AI_MODELS_CATALOG_GRANT_FILE"] == "/var/run/ai-models/catalog-grant/grant.json"
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "catalog-grant",
        "secret": {"secretName": grant_secret, "defaultMode": 0o440},
    } in volumes
    everything = json.dumps([job, rig.obj(), rig.kube.objects(EVENTS)])
    assert GRANT_TOKEN not in everything
    assert CATALOG_TOKEN not in everything

    frozen = {
        "resolvedType": "Catalog", "resolvedRevision": DIGEST,
        "catalog": {"sourceName": "central", "name": "tiny", "version": "1",
                    "catalogRevision": "rev1", "remoteDigest": DIGEST},
    }  # fmt: skip
    assert rig.obj()["status"]["phase"] == "Publishing"
    assert rig.obj()["status"]["source"] == frozen

    # The catalog moves on: the running import does not follow it.
    rig.store.put("central", "rev2", (entry(version="2"),), AT)
    rig.pod(1, "Running")
    rig.reconcile()
    assert rig.obj()["status"]["source"] == frozen
    result = {
        "artifact": {"kind": "OCI", "digest": DIGEST, "sizeBytes": 10,
                     "mediaType": "application/vnd.cncf.model.manifest.v1+json"},
        "resolved": {"format": "GGUF"},
        "source": {"resolvedType": "Catalog", "resolvedRevision": DIGEST,
                   "catalog": {"name": "tiny", "version": "1", "remoteDigest": DIGEST}},
    }  # fmt: skip
    rig.pod(1, "Succeeded", exit_code=0, annotations={naming.ANNOTATION_RESULT: json.dumps(result)})
    rig.job_status(conditions=[{"type": "Complete", "status": "True"}], succeeded=1)
    rig.reconcile()
    status = rig.obj()["status"]
    assert status["phase"] == "Ready"
    assert status["source"] == frozen
    assert status["artifact"]["digest"] == DIGEST


@pytest.mark.parametrize(
    ("sources", "ref", "reason", "message"),
    [
        ({}, {}, "CatalogSourceNotReady", "no ModelCatalogSource is Ready"),
        ({"a": (entry(),)}, {"sourceName": "b"}, "CatalogSourceNotReady",
         "ModelCatalogSource b is not Ready"),
        ({"a": (entry(),), "b": (entry(),)}, {}, "CatalogSourceAmbiguous",
         "2 ModelCatalogSources are Ready (a, b); set spec.source.catalog.sourceName"),
        ({"a": (entry("other"), entry(active=False))}, {}, "CatalogEntryNotFound",
         "ModelCatalogSource a (revision rev1) has no active entry tiny; rechecked on every "
         "refresh"),
        ({"a": (entry(version="1"), entry(version="2"))}, {}, "CatalogVersionAmbiguous",
         "ModelCatalogSource a has 2 active versions of tiny (1, 2); set "
         "spec.source.catalog.version"),
    ],
)  # fmt: skip
def test_an_unresolved_reference_is_pending_with_its_reason(
    sources: dict[str, tuple[CatalogEntry, ...]], ref: dict[str, str], reason: str, message: str
) -> None:
    rig = CatalogRig()
    for name, entries in sources.items():
        rig.source(name, *entries)
    rig.add(catalog_model(**ref))
    assert rig.reconcile() is None
    assert rig.obj()["status"]["phase"] == "Pending"
    assert rig.ready() == {
        "type": "Ready", "status": "False", "reason": reason, "message": message,
        "observedGeneration": 1, "lastTransitionTime": NOW,
    }  # fmt: skip
    assert rig.events() == [("Warning", reason, message)]
    assert rig.names(JOBS) == []
    assert rig.catalog.grants == []
    rig.reconcile()  # the same reason again: no second write, no second Event
    assert len(rig.kube.calls_of("replace", MODELS)) == 1
    assert len(rig.events()) == 1


def test_a_catalog_change_resolves_the_waiting_model() -> None:
    rig = CatalogRig()
    rig.source("a", entry("other"))
    rig.add(catalog_model(version="2"))
    rig.reconcile()
    assert rig.ready()["reason"] == "CatalogEntryNotFound"
    rig.store.put("a", "rev2", (entry(version="2"),), AT)
    rig.reconcile()
    assert rig.obj()["status"]["phase"] == "Publishing"
    assert rig.obj()["status"]["source"]["catalog"]["catalogRevision"] == "rev2"
    assert rig.catalog.grants == [("tiny", "2", DIGEST)]


def test_a_refused_grant_blocks_without_a_job_or_secret_and_holds_no_slot() -> None:
    rig = CatalogRig(max_concurrent=1)
    rig.source("a", entry())
    rig.catalog.refuse = True
    rig.add(catalog_model())
    assert rig.reconcile() == 2.0  # rechecked with the blocked backoff (2 s at mid jitter)
    assert rig.ready()["reason"] == "CatalogUnauthorized"
    assert rig.names(JOBS) == []
    assert rig.names(SECRETS) == []
    assert rig.slots.running() == 0
    assert rig.slots.queue_position(KEY, rig.obj())[0] == 1  # not among the waiting
    rig.catalog.refuse = False
    rig.reconcile()
    assert rig.names(JOBS) == [JOB]


def test_without_catalog_imports_the_kind_stays_unsupported() -> None:
    rig = Rig()
    rig.add(catalog_model())
    rig.reconcile()
    assert rig.ready()["reason"] == "SourceKindNotSupported"
