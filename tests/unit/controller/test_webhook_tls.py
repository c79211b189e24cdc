"""The webhook certificate: issued for the right names, kept while usable, re-issued when not."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509

from controller.errors import Conflict
from controller.webhook_tls import Certificate, ensure_certificate, service_hosts, sync_ca_bundle

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOSTS = service_hosts("ai-models-webhook", "d8-ai-models")


class FakeKube:
    """Secrets and one webhook configuration in memory; ``conflicts`` 409s the next writes."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.conflicts = 0
        self.writes = 0

    def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.objects.get(name)

    def _write(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict(409, "AlreadyExists", name)
        self.writes += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(self.writes)
        self.objects[name] = body
        return body

    def create(
        self, res: Any, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        return self._write(body["metadata"]["name"], body)

    def replace(
        self, res: Any, name: str, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        return self._write(name, body)


def sans(cert: Certificate) -> list[str]:
    parsed = x509.load_pem_x509_certificate(cert.cert_pem)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in names]


def test_the_certificate_is_created_once_and_kept() -> None:
    kube = FakeKube()
    first = ensure_certificate(kube, "d8-ai-models", "tls", HOSTS, ["127.0.0.1"], NOW)  # type: ignore[arg-type]
    assert sans(first) == [
        "ai-models-webhook.d8-ai-models.svc",
        "ai-models-webhook.d8-ai-models.svc.cluster.local",
        "127.0.0.1",
    ]
    x509.load_pem_x509_certificate(first.cert_pem).verify_directly_issued_by(
        x509.load_pem_x509_certificate(first.ca_pem)
    )
    again = ensure_certificate(kube, "d8-ai-models", "tls", HOSTS, ["127.0.0.1"], NOW)  # type: ignore[arg-type]
    assert again == first
    assert kube.writes == 1


def test_new_names_or_near_expiry_reissue_from_the_same_ca() -> None:
    kube = FakeKube()
    first = ensure_certificate(kube, "ns", "tls", HOSTS, [], NOW)  # type: ignore[arg-type]
    renamed = ensure_certificate(kube, "ns", "tls", HOSTS, ["127.0.0.1"], NOW)  # type: ignore[arg-type]
    assert renamed.ca_pem == first.ca_pem
    assert renamed.cert_pem != first.cert_pem
    later = ensure_certificate(
        kube, "ns", "tls", HOSTS, ["127.0.0.1"], NOW + dt.timedelta(days=340)
    )  # type: ignore[arg-type]
    assert later.ca_pem == first.ca_pem
    assert later.cert_pem != renamed.cert_pem
    assert kube.writes == 3


def test_a_lost_creation_race_uses_the_winners_secret() -> None:
    kube = FakeKube()
    winner = ensure_certificate(FakeKube(), "ns", "tls", HOSTS, [], NOW)  # type: ignore[arg-type]
    kube.conflicts = 1
    original_create = kube.create

    def create_after_winner(
        res: Any, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        kube.objects["tls"] = {
            "metadata": {"name": "tls", "resourceVersion": "1"},
            "data": {
                "ca.crt": base64.b64encode(winner.ca_pem).decode(),
                "ca.key": base64.b64encode(winner.ca_key_pem).decode(),
                "tls.crt": base64.b64encode(winner.cert_pem).decode(),
                "tls.key": base64.b64encode(winner.key_pem).decode(),
            },
        }
        return original_create(res, body, namespace)

    kube.create = create_after_winner  # type: ignore[method-assign]
    assert ensure_certificate(kube, "ns", "tls", HOSTS, [], NOW) == winner  # type: ignore[arg-type]


def test_the_ca_bundle_is_written_only_where_it_differs() -> None:
    kube = FakeKube()
    bundle = base64.b64encode(b"CA").decode()
    kube.objects["hooks"] = {
        "metadata": {"name": "hooks"},
        "webhooks": [
            {"name": "a", "clientConfig": {"caBundle": bundle}},
            {"name": "b", "clientConfig": {}},
        ],
    }
    assert sync_ca_bundle(kube, "hooks", b"CA") is True  # type: ignore[arg-type]
    assert [w["clientConfig"]["caBundle"] for w in kube.objects["hooks"]["webhooks"]] == [
        bundle,
        bundle,
    ]
    assert sync_ca_bundle(kube, "hooks", b"CA") is False  # type: ignore[arg-type]
    assert sync_ca_bundle(kube, "absent", b"CA") is False  # type: ignore[arg-type]
