"""``controller.catalog_client`` against a tiny real HTTPS server (a per-run CA): pagination and
its restart, 304, bounded bodies, malformed answers, a redirect to another host that is never
followed, a CA that does not match, ``Retry-After``, grants, and the environment's CA variables
left out of the decision."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from controller.catalog_client import MAX_PAGES, Catalog, CatalogClient
from controller.errors import (
    CatalogBusy,
    CatalogDigestMismatch,
    CatalogEntryNotFound,
    CatalogMalformed,
    CatalogTLSError,
    CatalogUnauthorized,
    CatalogUnreachable,
)
from tests.ground.certs import CertificateAuthority
from tests.ground.procs import free_port

pytestmark = pytest.mark.integration

JSON = dict[str, Any]
TOKEN = "client-token-1"
MIB = 1 << 20


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes | Callable[[Any], int] = b""
    """Bytes, or a writer given the socket file that returns how many bytes it sent."""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Server:
    url: str
    answer: Callable[[Request], Reply] = lambda request: Reply(404)
    log: list[Request] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                self.command,
                parts.path,
                {k: v[0] for k, v in parse_qs(parts.query).items()},
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
            server.log.append(request)
            reply = server.answer(request)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if isinstance(reply.body, bytes):
                if "Content-Length" not in reply.headers:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                server.sent.append(len(reply.body))
            else:
                self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                server.sent.append(reply.body(self.wfile))

        do_GET = do_POST = _serve  # noqa: N815 - http.server's names

    return Handler


@contextlib.contextmanager
def serve(cert: Path, key: Path, host: str = "127.0.0.1") -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = Server(f"https://{host}:{httpd.server_address[1]}")
    httpd.RequestHandlerClass = _handler(server)
    httpd.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    work = tmp_path_factory.mktemp("catalog-pki")
    authority = CertificateAuthority(work / "ca", name="catalog-test-ca")
    other = CertificateAuthority(work / "other", name="other-ca")
    pair = authority.issue("catalog", "127.0.0.1", hosts=("127.0.0.1", "localhost"), server=True)
    return Pki(authority.cert, other.cert, pair.cert, pair.key)


@pytest.fixture
def server(pki: Pki) -> Iterator[Server]:
    with serve(pki.cert, pki.key) as running:
        yield running


def client(server: Server, pki: Pki, ca: Path | None = None) -> CatalogClient:
    return CatalogClient(server.url, TOKEN, ca or pki.ca)


def entry(name: str, version: str = "1", digest: str | None = None) -> JSON:
    return {
        "name": name,
        "version": version,
        "active": True,
        "repository": f"127.0.0.1:5000/ai-models/clustermodel/{name}",
        "digest": digest or "sha256:" + "ab" * 32,
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "sizeBytes": 42,
        "resolved": {"architecture": "llama", "format": "Safetensors"},
        "futureField": "ignored",
    }


def page(revision: str, entries: list[JSON], next_token: str | None = None) -> Reply:
    body = {
        "apiVersion": "catalog.ai.deckhouse.io/v1",
        "revision": revision,
        "entries": entries,
        "nextPageToken": next_token,
    }
    return Reply(200, json.dumps(body).encode(), {"ETag": f'"{revision}"'})


def error(status: int, code: str, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps({"code": code, "message": f"{code} said the server"}).encode()
    return Reply(status, body, {"Content-Type": "application/json", **(headers or {})})


# ---- listing ----------------------------------------------------------------------------------


def test_pages_are_joined_and_every_request_carries_the_token(server: Server, pki: Pki) -> None:
    pages = {
        None: page("rev-1", [entry("a"), entry("b")], "p2"),
        "p2": page("rev-1", [entry("c"), entry("a", "2")], "p3"),
        "p3": page("rev-1", [entry("d")]),
    }
    server.answer = lambda request: pages[request.query.get("pageToken")]
    catalog = client(server, pki).fetch()
    assert catalog is not None
    assert catalog.revision == "rev-1"
    assert [(e.name, e.version) for e in catalog.entries] == [
        ("a", "1"),
        ("b", "1"),
        ("c", "1"),
        ("a", "2"),
        ("d", "1"),
    ]
    assert catalog.active_count == 5
    assert [(r.method, r.path, r.query) for r in server.log] == [
        ("GET", "/v1/catalog", {"pageSize": "500"}),
        ("GET", "/v1/catalog", {"pageSize": "500", "pageToken": "p2"}),
        ("GET", "/v1/catalog", {"pageSize": "500", "pageToken": "p3"}),
    ]
    assert {r.headers["authorization"] for r in server.log} == {f"Bearer {TOKEN}"}
    assert "if-none-match" not in server.log[0].headers


def test_an_unchanged_revision_is_a_304_and_none(server: Server, pki: Pki) -> None:
    server.answer = lambda request: (
        Reply(304) if request.headers.get("if-none-match") == '"rev-1"' else page("rev-2", [])
    )
    assert client(server, pki).fetch("rev-1") is None
    assert client(server, pki).fetch("rev-0") == Catalog("rev-2", ())


def test_a_revision_change_mid_listing_restarts_from_the_first_page(
    server: Server, pki: Pki
) -> None:
    answers = iter(
        [
            page("rev-1", [entry("a")], "old"),
            error(409, "RevisionChanged"),
            page("rev-2", [entry("a"), entry("b")], "new"),
            page("rev-2", [entry("c")]),
        ]
    )
    server.answer = lambda request: next(answers)
    catalog = client(server, pki).fetch()
    assert catalog is not None
    assert (catalog.revision, [e.name for e in catalog.entries]) == ("rev-2", ["a", "b", "c"])
    assert [r.query.get("pageToken") for r in server.log] == [None, "old", None, "new"]


def test_pages_of_different_revisions_restart_too(server: Server, pki: Pki) -> None:
    answers = iter([page("rev-1", [], "t"), page("rev-2", []), page("rev-2", [])])
    server.answer = lambda request: next(answers)
    assert client(server, pki).fetch() == Catalog("rev-2", ())


def test_a_catalog_that_never_settles_is_unreachable_for_now(server: Server, pki: Pki) -> None:
    server.answer = lambda request: (
        error(409, "RevisionChanged") if "pageToken" in request.query else page("r", [], "t")
    )
    with pytest.raises(CatalogUnreachable) as raised:
        client(server, pki).fetch()
    assert str(raised.value) == f"{server.url}: the catalog changed 4 times during one listing"
    assert len(server.log) == 8


def test_endless_pages_are_cut_at_the_bound(server: Server, pki: Pki) -> None:
    server.answer = lambda request: page("r", [], f"t{len(server.log)}")
    with pytest.raises(CatalogMalformed) as raised:
        client(server, pki).fetch()
    assert str(raised.value) == f"{server.url}: the listing exceeds {MAX_PAGES} pages"
    assert len(server.log) == MAX_PAGES


# ---- untrusted bodies -------------------------------------------------------------------------


def _endless(limit: int) -> Callable[[Any], int]:
    def write(out: Any) -> int:
        piece, sent = b"[" * MIB, 0
        try:
            while sent < limit:
                out.write(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        return sent

    return write


def test_a_100_mb_body_is_cut_at_16_mib(server: Server, pki: Pki) -> None:
    server.answer = lambda request: Reply(200, _endless(100 * MIB))
    with pytest.raises(CatalogMalformed) as raised:
        client(server, pki).fetch()
    assert str(raised.value) == f"GET {server.url}: body exceeds {16 * MIB} bytes"
    threading.Event().wait(0.5)  # the server thread notices the closed connection
    assert len(server.sent) == 1
    assert server.sent[0] < 40 * MIB  # 16 MiB read, plus what the socket buffers held


def test_a_declared_100_mb_body_is_refused_unread(server: Server, pki: Pki) -> None:
    server.answer = lambda request: Reply(
        200, _endless(100 * MIB), {"Content-Length": str(100 * MIB)}
    )
    with pytest.raises(CatalogMalformed) as raised:
        client(server, pki).fetch()
    assert str(raised.value) == (f"GET {server.url}: body of {100 * MIB} bytes exceeds {16 * MIB}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON"),
        (b"[" * 100_000, "the body is not JSON"),
        (
            b'{"apiVersion": "catalog.ai.deckhouse.io/v1", "revision": "r"}',
            "not protocol v1: entries: Field required",
        ),
        (
            json.dumps(
                {"apiVersion": "catalog.ai.deckhouse.io/v2", "revision": "r", "entries": []}
            ).encode(),
            "not protocol v1: apiVersion: Input should be 'catalog.ai.deckhouse.io/v1'",
        ),
    ],
)
def test_malformed_json_is_catalog_malformed(
    server: Server, pki: Pki, body: bytes, message: str
) -> None:
    server.answer = lambda request: Reply(200, body)
    with pytest.raises(CatalogMalformed) as raised:
        client(server, pki).fetch()
    assert str(raised.value) == f"{server.url}/v1/catalog: {message}"


def test_a_duplicate_name_and_version_is_malformed(server: Server, pki: Pki) -> None:
    pages = {None: page("rev-1", [entry("a")], "p2"), "p2": page("rev-1", [entry("a")])}
    server.answer = lambda request: pages[request.query.get("pageToken")]
    with pytest.raises(CatalogMalformed) as raised:
        client(server, pki).fetch()
    assert str(raised.value) == f"{server.url}: entry a version '1' appears twice in revision rev-1"


@pytest.mark.parametrize(
    "digest", ["sha256:" + "AB" * 32, "sha256:abc", "sha512:" + "ab" * 64, "ab" * 32]
)
def test_an_invalid_digest_is_malformed_and_not_echoed(
    server: Server, pki: Pki, digest: str
) -> None:
    server.answer = lambda request: page("rev-1", [entry("a"), entry("b", digest=digest)])
    with pytest.raises(CatalogMalformed) as raised:
        client(server, pki).fetch()
    assert str(raised.value) == (
        f"{server.url}/v1/catalog: not protocol v1: entries.1.digest: "
        "String should match pattern '^sha256:[0-9a-f]{64}$'"
    )
    assert digest not in str(raised.value)


# ---- redirects, TLS, the environment --------------------------------------------------------


def test_a_redirect_to_another_host_is_refused_and_the_token_stays_home(
    server: Server, pki: Pki
) -> None:
    with serve(pki.cert, pki.key, host="localhost") as other:
        other.answer = lambda request: page("stolen", [])
        server.answer = lambda request: Reply(302, b"", {"Location": f"{other.url}/v1/catalog"})
        with pytest.raises(CatalogMalformed) as raised:
            client(server, pki).fetch()
        assert str(raised.value) == (
            f"GET {server.url}/v1/catalog: redirect refused (answered 302; not followed)"
        )
        assert [r.headers.get("authorization") for r in other.log] == []
    assert len(server.log) == 1


def test_a_ca_that_does_not_match_is_a_tls_error(server: Server, pki: Pki) -> None:
    with pytest.raises(CatalogTLSError) as raised:
        client(server, pki, ca=pki.other_ca).fetch()
    assert str(raised.value).startswith(
        f"GET {server.url}/v1/catalog: the certificate does not verify against caSecretName ("
    )
    assert server.log == []


def test_the_environments_ca_bundle_neither_replaces_nor_adds_a_ca(
    server: Server, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.answer = lambda request: page("rev-1", [])
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(variable, str(pki.other_ca))
    assert client(server, pki).fetch() == Catalog("rev-1", ())
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(pki.ca))
    with pytest.raises(CatalogTLSError):
        CatalogClient(server.url, TOKEN).fetch()  # system CAs only


def test_nothing_listening_is_unreachable(pki: Pki) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(CatalogUnreachable) as raised:
        CatalogClient(url, TOKEN, pki.ca).fetch()
    assert str(raised.value).startswith(f"GET {url}/v1/catalog: ")


# ---- error answers ----------------------------------------------------------------------------


def test_429_carries_retry_after(server: Server, pki: Pki) -> None:
    server.answer = lambda request: error(429, "TooManyRequests", {"Retry-After": "7"})
    with pytest.raises(CatalogBusy) as raised:
        client(server, pki).fetch()
    assert (raised.value.reason, raised.value.retry_after, raised.value.code) == (
        "CatalogUnreachable",
        7.0,
        "TooManyRequests",
    )
    assert str(raised.value) == (
        f"GET {server.url}/v1/catalog: answered 429 TooManyRequests: "
        "TooManyRequests said the server"
    )


@pytest.mark.parametrize(("value", "seconds"), [(None, 30.0), ("soon", 30.0), ("99999", 3600.0)])
def test_503_retry_after_is_bounded(
    server: Server, pki: Pki, value: str | None, seconds: float
) -> None:
    headers = {"Retry-After": value} if value else {}
    server.answer = lambda request: error(503, "Unavailable", headers)
    with pytest.raises(CatalogBusy) as raised:
        client(server, pki).fetch()
    assert raised.value.retry_after == seconds


@pytest.mark.parametrize(
    ("reply", "kind", "reason"),
    [
        (error(401, "Unauthorized"), CatalogUnauthorized, "CatalogUnauthorized"),
        (error(403, "Forbidden"), CatalogUnauthorized, "CatalogUnauthorized"),
        (Reply(500, b"oops"), CatalogUnreachable, "CatalogUnreachable"),
        (Reply(404, b"<html>"), CatalogMalformed, "CatalogMalformed"),
        (error(400, "BadRequest"), CatalogMalformed, "CatalogMalformed"),
        (Reply(204), CatalogMalformed, "CatalogMalformed"),
        (Reply(304), CatalogMalformed, "CatalogMalformed"),  # without If-None-Match
    ],
)
def test_each_status_is_its_error(
    server: Server, pki: Pki, reply: Reply, kind: type[Exception], reason: str
) -> None:
    server.answer = lambda request: reply
    with pytest.raises(kind) as raised:
        client(server, pki).fetch()
    assert getattr(raised.value, "reason") == reason  # noqa: B009
    assert TOKEN not in str(raised.value)


# ---- grants -----------------------------------------------------------------------------------

DIGEST = "sha256:" + "cd" * 32


def test_a_grant(server: Server, pki: Pki) -> None:
    grant = {
        "registry": "127.0.0.1:8443",
        "repository": "ai-models/clustermodel/llama",
        "token": "grant-token",
        "expiresAt": "2026-01-02T03:14:05Z",
    }
    server.answer = lambda request: Reply(201, json.dumps(grant).encode())
    got = client(server, pki).grant("llama", "1", DIGEST)
    assert got.to_wire() == grant
    (request,) = server.log
    assert (request.method, request.path, json.loads(request.body)) == (
        "POST",
        "/v1/grants",
        {"name": "llama", "version": "1", "digest": DIGEST},
    )
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (error(404, "EntryNotFound"), CatalogEntryNotFound),
        (error(409, "DigestMismatch"), CatalogDigestMismatch),
        (Reply(200, b"{}"), CatalogMalformed),
        (Reply(201, b'{"registry": "x"}'), CatalogMalformed),
    ],
)
def test_grant_refusals(server: Server, pki: Pki, reply: Reply, kind: type[Exception]) -> None:
    server.answer = lambda request: reply
    with pytest.raises(kind):
        client(server, pki).grant("llama", "1", DIGEST)
