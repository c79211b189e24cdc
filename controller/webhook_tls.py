"""The webhook's certificate, provisioned by the controller itself.

A Secret in the system namespace (``webhook.tlsSecretName``) holds a CA (``ca.crt``,
``ca.key``) and a serving certificate (``tls.crt``, ``tls.key``) for
``<service>.<namespace>.svc`` (plus ``webhook.ipAddresses``). ``ensure_certificate`` creates it
when absent — two replicas racing: the loser's 409 makes it read the winner's — and re-issues
the serving certificate from the same CA when it is unreadable, expires within 30 days or names
other hosts. ``sync_ca_bundle`` writes the CA into every webhook of the
MutatingWebhookConfiguration whose ``caBundle`` differs, so installs, upgrades and restarts
keep the API server trusting the current certificate. Keys are ECDSA P-256.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.errors import Conflict
from controller.kube import JSON, SECRETS, KubeClient, Resource

log = structlog.get_logger("webhook-tls")
MUTATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
)
CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class Certificate:
    ca_pem: bytes
    ca_key_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def new_ca(now: dt.datetime, common_name: str = "ai-models-webhook-ca") -> tuple[bytes, bytes]:
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _sans(hosts: list[str], ips: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return names


def issue(
    ca_pem: bytes, ca_key_pem: bytes, hosts: list[str], ips: list[str], now: dt.datetime
) -> tuple[bytes, bytes]:
    """A serving certificate (and its key) for ``hosts`` and ``ips``, signed by the CA."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0] if hosts else ips[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVING_DAYS))
        .add_extension(x509.SubjectAlternativeName(_sans(hosts, ips)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _usable(cert: Certificate, hosts: list[str], ips: list[str], now: dt.datetime) -> bool:
    """The serving certificate is signed by the CA, valid for 30 more days, for these names."""
    try:
        ca = x509.load_pem_x509_certificate(cert.ca_pem)
        serving = x509.load_pem_x509_certificate(cert.cert_pem)
        serialization.load_pem_private_key(cert.key_pem, None)
        serving.verify_directly_issued_by(ca)
        sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    wanted = set(_sans(hosts, ips))
    valid_until = min(serving.not_valid_after_utc, ca.not_valid_after_utc)
    return set(sans) == wanted and valid_until - RENEW_BEFORE > now


def _ca_usable(cert: Certificate, now: dt.datetime) -> bool:
    """The CA and its key load, belong together and stay valid for 30 more days."""
    try:
        ca = x509.load_pem_x509_certificate(cert.ca_pem)
        key = serialization.load_pem_private_key(cert.ca_key_pem, None)
    except (ValueError, TypeError):
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return False
    raw = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    same = key.public_key().public_bytes(*raw) == ca.public_key().public_bytes(*raw)
    return same and ca.not_valid_after_utc - RENEW_BEFORE > now


def _of_secret(secret: JSON) -> Certificate | None:
    data = secret.get("data") or {}
    try:
        parts = [base64.b64decode(data[k]) for k in ("ca.crt", "ca.key", "tls.crt", "tls.key")]
    except (KeyError, ValueError):
        return None
    return Certificate(*parts)


def _secret_data(cert: Certificate) -> dict[str, str]:
    values = {
        "ca.crt": cert.ca_pem,
        "ca.key": cert.ca_key_pem,
        "tls.crt": cert.cert_pem,
        "tls.key": cert.key_pem,
    }
    return {k: base64.b64encode(v).decode() for k, v in values.items()}


def service_hosts(service: str, namespace: str) -> list[str]:
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def ensure_certificate(
    kube: KubeClient,
    namespace: str,
    secret_name: str,
    hosts: list[str],
    ips: list[str],
    now: dt.datetime | None = None,
) -> Certificate:
    """The certificate in the Secret, created or re-issued when needed."""
    now = now or dt.datetime.now(dt.UTC)
    for _ in range(3):
        secret = kube.get(SECRETS, secret_name, namespace)
        current = _of_secret(secret) if secret else None
        if current is not None and _usable(current, hosts, ips, now):
            return current
        if current is not None and _ca_usable(current, now):
            ca_pem, ca_key_pem = current.ca_pem, current.ca_key_pem  # keep trusting clients
        else:
            ca_pem, ca_key_pem = new_ca(now)
        cert = Certificate(ca_pem, ca_key_pem, *issue(ca_pem, ca_key_pem, hosts, ips, now))
        body: JSON = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": namespace},
            "type": "Opaque",
            "data": _secret_data(cert),
        }
        try:
            if secret is None:
                kube.create(SECRETS, body, namespace)
            else:
                body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
                body["metadata"]["labels"] = secret["metadata"].get("labels") or {}
                kube.replace(SECRETS, secret_name, body, namespace)
        except Conflict:
            continue  # another replica wrote it first: use theirs
        log.info("webhook certificate written", secret=f"{namespace}/{secret_name}")
        return cert
    raise Conflict(409, "Conflict", f"Secret {namespace}/{secret_name} kept changing")


def sync_ca_bundle(kube: KubeClient, configuration: str, ca_pem: bytes) -> bool:
    """Writes ``ca_pem`` into every webhook's caBundle; ``True`` when something changed,
    ``False`` also when the configuration does not exist (webhook disabled)."""
    bundle = base64.b64encode(ca_pem).decode()
    for _ in range(3):
        current = kube.get(MUTATING_WEBHOOKS, configuration)
        if current is None:
            return False
        webhooks = current.get("webhooks") or []
        stale = [w for w in webhooks if (w.get("clientConfig") or {}).get("caBundle") != bundle]
        if not stale:
            return False
        for webhook in stale:
            webhook.setdefault("clientConfig", {})["caBundle"] = bundle
        try:
            kube.replace(MUTATING_WEBHOOKS, configuration, current)
        except Conflict:
            continue
        log.info("webhook caBundle updated", configuration=configuration, webhooks=len(stale))
        return True
    raise Conflict(409, "Conflict", f"MutatingWebhookConfiguration {configuration} kept changing")
