"""Certificates of the real test node, signed with the control plane's per-run CA.

``controlplane.run_control_plane`` keeps its CA under ``<work>/pki``; the node's identities (the
kubelet as ``system:node:<name>`` in ``system:nodes``, kube-scheduler as
``system:kube-scheduler``) and the kubelet's serving certificate are issued from it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.ground.certs import KeyPair
from tests.ground.controlplane import ControlPlane

CA_STEM = "ai-models-test-ca"


def _ca(plane: ControlPlane) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    pki = plane.work_dir / "pki"
    cert = x509.load_pem_x509_certificate((pki / f"{CA_STEM}.crt").read_bytes())
    key = serialization.load_pem_private_key((pki / f"{CA_STEM}.key").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return cert, key


def _issue(
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
    directory: Path,
    stem: str,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    address: str | None = None,
) -> KeyPair:
    ca_cert, ca_key = ca
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if address is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))])
        builder = builder.add_extension(san, critical=False)
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(
        builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    )
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pair.key.chmod(0o600)
    return pair


def issue_client_cert(
    plane: ControlPlane, directory: Path, stem: str, user: str, group: str | None = None
) -> KeyPair:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    if group is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, group))
    return _issue(
        _ca(plane), directory, stem, x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH
    )


def issue_serving_cert(plane: ControlPlane, directory: Path, stem: str, address: str) -> KeyPair:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    return _issue(_ca(plane), directory, stem, subject, ExtendedKeyUsageOID.SERVER_AUTH, address)
