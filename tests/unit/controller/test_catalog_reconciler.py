"""The ModelCatalogSource reconcile on the in-memory API server, a fake clock, a fixed jitter and
a scripted catalog client: exact status, no write on a 304, the last good revision kept on a
failure, the refresh schedule and every condition reason."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.catalog_client import Catalog
from controller.catalog_reconciler import CatalogReconciler, SourceKey, check_url
from controller.catalogs import CatalogStore, Entry
from controller.config import CatalogConfig
from controller.errors import (
    CatalogBusy,
    CatalogError,
    CatalogMalformed,
    CatalogTLSError,
    CatalogUnauthorized,
    CatalogUnreachable,
    InvalidCatalogURL,
)
from controller.events import EventRecorder
from controller.kube import EVENTS, MODEL_CATALOG_SOURCES, SECRETS
from tests.ground.certs import CertificateAuthority
from tests.unit.controller.fakekube import FakeKube, fake_caches
from tests.unit.controller.test_catalogs import entry

JSON = dict[str, Any]
SECRETS_NS = "d8-system"
NAME = "central"
KEY = SourceKey(NAME)
URL = "https://catalog.example:8443/base"
TOKEN = "catalog-token-123"
NOW = "2026-01-02T03:04:05Z"
TEN_MINUTES = 600.0
ENTRIES = (entry("llama", "1"), entry("qwen", "1"), entry("old", "1", active=False))


@dataclass
class FakeCatalog:
    """The catalog as the reconcile sees it through the client: answers played in order (the
    last one repeats); every call recorded as (url, token, ca file, If-None-Match revision)."""

    answers: list[Catalog | CatalogError | None] = field(default_factory=list)
    calls: list[tuple[str, str, Path | None, str | None]] = field(default_factory=list)

    def factory(self, url: str, token: str, ca_file: Path | None) -> FakeCatalog.Client:
        return FakeCatalog.Client(self, url, token, ca_file)

    @dataclass
    class Client:
        catalog: FakeCatalog
        url: str
        token: str
        ca_file: Path | None

        def fetch(self, revision: str | None = None) -> Catalog | None:
            self.catalog.calls.append((self.url, self.token, self.ca_file, revision))
            answer = self.catalog.answers[0]
            if len(self.catalog.answers) > 1:
                self.catalog.answers.pop(0)
            if isinstance(answer, CatalogError):
                raise answer
            return answer


class Rig:
    def __init__(self, tmp: Path, *answers: Catalog | CatalogError | None, jitter: float = 0.5):
        self.kube = FakeKube()
        self.clock = self.kube.clock
        self.catalog = FakeCatalog(list(answers))
        self.changes: list[str] = []
        self.store = CatalogStore(on_change=self.changes.append)
        self.jitter = jitter
        self.tmp = tmp
        self.reconciler = self.restart()

    def restart(self) -> CatalogReconciler:
        """A new controller process: an empty store, no schedule."""
        self.store = CatalogStore(on_change=self.changes.append)
        self.reconciler = CatalogReconciler(
            self.kube,
            fake_caches(self.kube, "d8-ai-models").catalog_sources,
            CatalogConfig(),
            self.store,
            EventRecorder(self.kube),
            client=self.catalog.factory,
            now=self.clock.now,
            monotonic=self.clock.monotonic,
            jitter=lambda: self.jitter,
            ca_dir=self.tmp / "ca",
        )
        return self.reconciler

    def source(self, **spec: Any) -> None:
        body = {"url": URL, "credentialsSecretName": "catalog-token", **spec}
        obj = {
            "apiVersion": "ai.deckhouse.io/v1alpha1",
            "kind": "ModelCatalogSource",
            "metadata": {"name": NAME, "uid": "uid-central"},
            "spec": {k: v for k, v in body.items() if v is not None},
        }
        if self.kube.stored(MODEL_CATALOG_SOURCES, NAME) is None:
            self.kube.seed(MODEL_CATALOG_SOURCES, obj)
        else:
            self.kube.merge_patch(MODEL_CATALOG_SOURCES, NAME, {"spec": obj["spec"]})

    def secret(self, name: str = "catalog-token", **data: bytes) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        self.kube.seed(SECRETS, {"metadata": {"name": name}, "data": encoded}, SECRETS_NS)

    def reconcile(self) -> float | None:
        return self.reconciler.reconcile(KEY)

    def status(self) -> JSON:
        stored = self.kube.stored(MODEL_CATALOG_SOURCES, NAME)
        assert stored is not None
        return dict(stored.get("status") or {})

    def ready(self) -> JSON:
        return dict(self.status()["conditions"][0])

    def status_writes(self) -> int:
        return len(self.kube.calls_of("replace", MODEL_CATALOG_SOURCES))

    def events(self) -> list[tuple[str, str, str]]:
        return [(e["type"], e["reason"], e["message"]) for e in self.kube.objects(EVENTS)]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path, Catalog("rev-1", ENTRIES))
    rig.source()
    rig.secret(token=TOKEN.encode() + b"\n")  # a trailing newline, as `--from-file` leaves it
    return rig


def ready_status(revision: str, count: int, time: str = NOW, transition: str = NOW) -> JSON:
    return {
        "catalogRevision": revision,
        "entryCount": count,
        "lastSuccessfulRefreshTime": time,
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "CatalogRefreshed",
                "message": f"revision {revision}: {count} active entries",
                "observedGeneration": 1,
                "lastTransitionTime": transition,
            }
        ],
    }


def test_the_first_refresh_writes_the_exact_status_and_holds_the_entries(rig: Rig) -> None:
    delay = rig.reconcile()
    assert delay == TEN_MINUTES  # jitter 0.5: the middle of ±10 %
    assert rig.catalog.calls == [(URL, TOKEN, None, None)]
    assert rig.status() == ready_status("rev-1", 2)
    assert rig.events() == [("Normal", "CatalogRefreshed", "revision rev-1: 2 active entries")]
    assert rig.store.resolve(None, "qwen", None) == Entry(NAME, "rev-1", ENTRIES[1])
    assert rig.changes == [NAME]


def test_a_reconcile_before_the_interval_waits_without_fetching(rig: Rig) -> None:
    rig.reconcile()
    rig.clock.advance(100)
    assert rig.reconcile() == TEN_MINUTES - 100
    assert len(rig.catalog.calls) == 1
    assert rig.status_writes() == 1


def test_a_304_writes_nothing(rig: Rig) -> None:
    rig.reconcile()
    rig.catalog.answers = [None]
    rig.clock.advance(TEN_MINUTES)
    assert rig.reconcile() == TEN_MINUTES
    assert rig.catalog.calls[-1] == (URL, TOKEN, None, "rev-1")  # If-None-Match
    assert rig.status_writes() == 1
    assert rig.status() == ready_status("rev-1", 2)
    assert len(rig.events()) == 1


def test_a_new_revision_moves_the_status_and_says_so(rig: Rig) -> None:
    rig.reconcile()
    rig.catalog.answers = [Catalog("rev-2", (entry("llama", "1"),))]
    rig.clock.advance(TEN_MINUTES)
    rig.reconcile()
    assert rig.status() == ready_status("rev-2", 1, "2026-01-02T03:14:05Z")
    assert rig.events()[-1] == (
        "Normal",
        "CatalogRevisionChanged",
        "revision rev-1 → revision rev-2: 1 active entries",
    )
    held = rig.store.get(NAME)
    assert held is not None
    assert held.entries == (entry("llama", "1"),)


@pytest.mark.parametrize(("jitter", "delay"), [(0.0, 540.0), (1.0, 660.0)])
def test_the_interval_is_jittered_by_ten_percent(
    tmp_path: Path, jitter: float, delay: float
) -> None:
    rig = Rig(tmp_path, Catalog("rev-1", ENTRIES), jitter=jitter)
    rig.source()
    rig.secret(token=TOKEN.encode())
    assert rig.reconcile() == pytest.approx(delay)
    rig.clock.advance(delay - 1)
    assert rig.reconcile() == pytest.approx(1.0)
    rig.clock.advance(1)
    rig.reconcile()
    assert len(rig.catalog.calls) == 2


@pytest.mark.parametrize(("interval", "seconds"), [("30s", 30.0), ("1h", 3600.0), ("1m30s", 90.0)])
def test_the_refresh_interval_is_the_sources(rig: Rig, interval: str, seconds: float) -> None:
    rig.source(refreshInterval=interval)
    assert rig.reconcile() == pytest.approx(seconds)


def test_a_failure_keeps_the_last_good_revision_and_backs_off(rig: Rig) -> None:
    rig.reconcile()
    rig.catalog.answers = [CatalogUnreachable(f"GET {URL}/v1/catalog: connection refused")]
    delays = []
    for _ in range(9):
        rig.clock.advance(delays[-1] if delays else TEN_MINUTES)
        delays.append(rig.reconcile())
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0]
    status = rig.status()
    assert {
        k: status[k] for k in ("catalogRevision", "entryCount", "lastSuccessfulRefreshTime")
    } == {
        "catalogRevision": "rev-1",
        "entryCount": 2,
        "lastSuccessfulRefreshTime": NOW,
    }
    assert rig.ready() == {
        "type": "Ready",
        "status": "False",
        "reason": "CatalogUnreachable",
        "message": f"GET {URL}/v1/catalog: connection refused",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-01-02T03:14:05Z",
    }
    assert rig.status_writes() == 2  # the same failure again writes nothing
    assert rig.events()[1:] == [
        ("Warning", "CatalogUnreachable", f"GET {URL}/v1/catalog: connection refused")
    ]
    held = rig.store.get(NAME)
    assert held is not None
    assert (held.revision, held.ready) == ("rev-1", False)


def test_back_after_a_failure_with_a_304_is_ready_again_with_the_old_time(rig: Rig) -> None:
    rig.reconcile()
    rig.catalog.answers = [CatalogUnreachable("down"), None]
    rig.clock.advance(TEN_MINUTES)
    assert rig.reconcile() == 5.0
    rig.clock.advance(5)
    assert rig.reconcile() == TEN_MINUTES
    assert rig.status() == ready_status("rev-1", 2, NOW, "2026-01-02T03:14:10Z")
    assert [e[1] for e in rig.events()] == [
        "CatalogRefreshed",
        "CatalogUnreachable",
        "CatalogRefreshed",
    ]
    assert rig.store.ready_sources() == (NAME,)


def test_a_busy_catalog_is_asked_again_after_retry_after(rig: Rig) -> None:
    rig.catalog.answers = [CatalogBusy("GET …: answered 429", 42.0)]
    assert rig.reconcile() == 42.0
    assert rig.ready()["reason"] == "CatalogUnreachable"
    assert "catalogRevision" not in rig.status()


def test_a_spec_change_refreshes_at_once(rig: Rig) -> None:
    rig.reconcile()
    rig.catalog.answers = [None]
    rig.source(refreshInterval="1h")
    assert rig.reconcile() == 3600.0
    assert len(rig.catalog.calls) == 2
    assert rig.status()["observedGeneration"] == 2


def test_after_a_restart_the_body_is_fetched_again(rig: Rig) -> None:
    rig.reconcile()
    rig.restart()
    rig.clock.advance(60)
    rig.reconcile()
    assert rig.catalog.calls[-1] == (URL, TOKEN, None, None)  # nothing held: no If-None-Match
    assert rig.status() == ready_status("rev-1", 2, "2026-01-02T03:05:05Z")
    assert rig.store.ready_sources() == (NAME,)


def test_a_deleted_source_is_forgotten(rig: Rig) -> None:
    rig.reconcile()
    rig.kube.drop(MODEL_CATALOG_SOURCES, NAME)
    assert rig.reconcile() is None
    assert rig.store.get(NAME) is None
    assert rig.changes == [NAME, NAME]


def not_ready(rig: Rig) -> tuple[str, str]:
    ready = rig.ready()
    assert ready["status"] == "False"
    return ready["reason"], ready["message"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (CatalogUnauthorized("GET …: answered 401"), "CatalogUnauthorized"),
        (CatalogTLSError("GET …: certificate verify failed"), "CatalogTLSError"),
        (CatalogMalformed("GET …: redirect refused"), "CatalogMalformed"),
        (CatalogUnreachable("GET …: timed out"), "CatalogUnreachable"),
    ],
)
def test_each_client_failure_is_its_reason(rig: Rig, error: CatalogError, reason: str) -> None:
    rig.catalog.answers = [error]
    assert rig.reconcile() == 5.0
    assert not_ready(rig) == (reason, str(error))
    assert rig.events() == [("Warning", reason, str(error))]


def test_a_missing_credentials_secret(rig: Rig) -> None:
    rig.kube.drop(SECRETS, "catalog-token", SECRETS_NS)
    assert rig.reconcile() == 5.0
    assert not_ready(rig) == (
        "CredentialsSecretNotFound",
        "Secret d8-system/catalog-token (credentialsSecretName) not found",
    )
    assert rig.catalog.calls == []
    rig.secret(token=TOKEN.encode())
    rig.clock.advance(5)
    rig.reconcile()
    assert rig.ready()["reason"] == "CatalogRefreshed"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Secret d8-system/catalog-token has no 'token' key"),
        (
            {"token": b"two words"},
            "Secret d8-system/catalog-token: key 'token' must be a non-empty printable ASCII "
            "token without spaces, at most 4096 characters",
        ),
        (
            {"token": b"x" * 4097},
            "Secret d8-system/catalog-token: key 'token' must be a non-empty printable ASCII "
            "token without spaces, at most 4096 characters",
        ),
    ],
)
def test_an_invalid_credentials_secret(rig: Rig, data: dict[str, bytes], message: str) -> None:
    rig.kube.drop(SECRETS, "catalog-token", SECRETS_NS)
    rig.secret(**data)
    rig.reconcile()
    assert not_ready(rig) == ("CredentialsSecretInvalid", message)
    assert rig.catalog.calls == []


def test_a_missing_ca_secret(rig: Rig) -> None:
    rig.source(caSecretName="catalog-ca")
    rig.reconcile()
    assert not_ready(rig) == (
        "CASecretInvalid",
        "Secret d8-system/catalog-ca (caSecretName) not found",
    )


def test_a_ca_secret_that_is_not_pem(rig: Rig) -> None:
    rig.source(caSecretName="catalog-ca")
    rig.secret("catalog-ca", **{"ca.crt": b"-----BEGIN CERTIFICATE-----\nnope\n"})
    rig.reconcile()
    assert not_ready(rig) == (
        "CASecretInvalid",
        "caSecretName: key 'ca.crt' is not PEM certificates",
    )


def test_a_ca_secret_becomes_the_clients_ca_file(rig: Rig, tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    rig.source(caSecretName="catalog-ca")
    rig.secret("catalog-ca", **{"ca.crt": ca.cert.read_bytes()})
    rig.reconcile()
    ca_file = rig.catalog.calls[0][2]
    assert ca_file is not None
    assert ca_file.parent == tmp_path / "ca"
    assert ca_file.read_bytes() == ca.cert.read_bytes()
    assert rig.ready()["reason"] == "CatalogRefreshed"


@pytest.mark.parametrize("interval", ["10", "10s", "29s", "5m10", "1d", "-1m", "200h"])
def test_an_invalid_refresh_interval_waits_for_a_spec_change(rig: Rig, interval: str) -> None:
    rig.source(refreshInterval=interval)
    assert rig.reconcile() is None
    reason, message = not_ready(rig)
    assert reason == "InvalidRefreshInterval"
    assert message.startswith(f"spec.refreshInterval: {interval!r} is ")
    assert rig.catalog.calls == []
    rig.clock.advance(10 * 86_400)
    assert rig.reconcile() is None  # not rechecked on a timer
    assert rig.status_writes() == 1


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://catalog.example", "must be https://host[:port][/path]"),
        ("https://user:pw@catalog.example", "must not carry credentials (userinfo)"),
        ("https://catalog.example/?x=1", "must have no query or fragment"),
        ("https://catalog.example/#top", "must have no query or fragment"),
        ("https://catalog.example/a b", "must not contain whitespace or control characters"),
        ("https://catalog.example:99999", "is not a URL"),
        ("https:///path", "must be https://host[:port][/path]"),
    ],
)
def test_the_controllers_own_url_guard(rig: Rig, url: str, problem: str) -> None:
    with pytest.raises(InvalidCatalogURL) as raised:
        check_url(url)
    assert str(raised.value) == f"spec.url {problem}"
    rig.source(url=url)
    assert rig.reconcile() is None
    assert not_ready(rig) == ("InvalidCatalogURL", f"spec.url {problem}")
    assert rig.catalog.calls == []


def test_check_url_keeps_a_path_without_its_trailing_slash() -> None:
    assert check_url("https://catalog.example:8443/base/") == "https://catalog.example:8443/base"


def test_the_token_never_reaches_status_or_events(rig: Rig) -> None:
    rig.catalog.answers = [CatalogUnauthorized(f"GET …: answered 401 Unauthorized: bad {TOKEN}")]
    rig.reconcile()
    assert not_ready(rig) == (
        "CatalogUnauthorized",
        "GET …: answered 401 Unauthorized: bad [redacted]",
    )
    stored = [rig.kube.stored(MODEL_CATALOG_SOURCES, NAME), *rig.kube.objects(EVENTS)]
    assert TOKEN not in repr(stored)


def test_the_schedule_is_per_source_and_a_failure_is_not_sticky(tmp_path: Path) -> None:
    rig = Rig(tmp_path, CatalogUnreachable("down"), Catalog("rev-1", ENTRIES))
    rig.source()
    rig.secret(token=TOKEN.encode())
    assert rig.reconcile() == 5.0
    rig.clock.advance(5)
    assert rig.reconcile() == TEN_MINUTES
    rig.catalog.answers = [CatalogUnreachable("down again")]
    rig.clock.advance(TEN_MINUTES)
    assert rig.reconcile() == 5.0  # the backoff starts over after a success
