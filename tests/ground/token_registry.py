"""A distribution registry with bearer-token auth (``auth.token``) and its token server.

The token server issues RS256 JWTs (the signing certificate in ``x5c``, trusted by the registry
through ``rootcertbundle``) for the scopes asked, to a client that presents Basic
``pusher:right-password``; everyone else gets 401. Both listen on 127.0.0.1 over plain HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.ground.certs import CertificateAuthority, KeyPair
from tests.ground.procs import Process, free_port

USER = "pusher"
PASSWORD = "right-password"
TOKEN_SERVICE = "ai-models-test"
TOKEN_ISSUER = "ai-models-test-issuer"


@dataclass(frozen=True)
class TokenRegistry:
    host: str
    auth_file: Path
    """A docker config with the right password for ``host``."""
    wrong_auth_file: Path
    token_requests: list[str]
    """The path and query of every request the token server received."""
    realm: str

    def token(self, scope: str) -> str:
        """A token for ``scope`` (``repository:<name>:pull,push``), asked as the tests' pusher."""
        basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(
            f"{self.realm}?{urlencode({'service': TOKEN_SERVICE, 'scope': scope})}",
            headers={"Authorization": f"Basic {basic}"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return str(json.loads(answer.read())["token"])


def docker_config(path: Path, host: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class _TokenIssuer:
    """Signs registry tokens (RS256 JWT with the signing certificate in ``x5c``)."""

    def __init__(self, signer: KeyPair) -> None:
        key = serialization.load_pem_private_key(signer.key.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self._key = key
        cert = x509.load_pem_x509_certificate(signer.cert.read_bytes())
        self._chain = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]

    def token(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": self._chain}
        signing_input = (
            _b64url(json.dumps(header).encode()) + b"." + _b64url(json.dumps(claims).encode())
        )
        signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return (signing_input + b"." + _b64url(signature)).decode()


def _token_handler(
    issuer: _TokenIssuer, password: str, seen: list[str]
) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            seen.append(self.path)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            scopes = [s for value in query.get("scope", []) for s in value.split()]
            body = json.dumps({"token": issuer.token(USER, scopes)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def run_token_registry(work: Path) -> Iterator[TokenRegistry]:
    """docker-registry with ``auth.token``: the Bearer flow against the real thing."""
    authority = CertificateAuthority(work / "pki")
    issuer = _TokenIssuer(authority.issue("token-signer", "token-signer"))
    seen: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(issuer, PASSWORD, seen))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(work / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
        "auth": {"token": {
            "realm": realm,
            "service": TOKEN_SERVICE, "issuer": TOKEN_ISSUER,
            "rootcertbundle": str(authority.cert),
        }},
    }  # fmt: skip
    (work / "registry.yml").write_text(yaml.safe_dump(config))
    process = Process("token-registry", ["docker-registry", "serve", str(work / "registry.yml")],
                      work, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    host = f"127.0.0.1:{port}"
    try:
        process.wait_ready(lambda: _asks_for_token(host), timeout=30)
        yield TokenRegistry(
            host,
            docker_config(work / "config.json", host, USER, PASSWORD),
            docker_config(work / "wrong.json", host, USER, "wrong-password"),
            seen,
            realm,
        )
    finally:
        process.stop()
        server.shutdown()
        server.server_close()


def _asks_for_token(host: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
    except urllib.error.HTTPError as error:
        return error.code == 401 and "Bearer" in error.headers.get("WWW-Authenticate", "")
    return False
