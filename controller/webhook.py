"""The mutating admission webhook: AdmissionReview in, allowed (with a JSONPatch) or denied out.

Two paths, one per webhook of the chart's MutatingWebhookConfiguration:

- ``/mutate-pods`` (CREATE): a pod naming models gets them injected (``podpatch.inject_pod``);
  whether it is gated depends on the models observed at that moment (``consumption.readiness``).
- ``/mutate-workloads`` (CREATE, UPDATE of Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
  CronJob): the annotations are validated and copied into the pod template; the pods the
  workload creates are injected by the pod path — one place, so changing the injection never
  rolls workloads out.

``admit`` is pure given a model lookup; ``WebhookServer`` serves it over HTTPS (stdlib
``http.server`` + ``ssl``), one TLS handshake per connection in the connection's own thread,
request bodies bounded, the certificate reloaded when ``reload`` is called with new PEM.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import structlog

from controller.config import Config, MaterializeConfig
from controller.consumption import (
    ConsumptionRefused,
    ModelLookup,
    Waiting,
    has_references,
    parse_references,
    readiness,
)
from controller.errors import KubeError
from controller.httpserver import ConnectionServer, server_context
from controller.kube import KubeClient
from controller.podpatch import WORKLOAD_KINDS, copy_to_template, inject_pod
from controller.webhook_tls import ensure_certificate, service_hosts, sync_ca_bundle

JSON = dict[str, Any]
log = structlog.get_logger("webhook")
PODS_PATH = "/mutate-pods"
WORKLOADS_PATH = "/mutate-workloads"
MAX_REVIEW_BYTES = 8 << 20
"""An object is at most 1.5 MiB in etcd; a review carries it twice (object, oldObject)."""
CONNECTION_TIMEOUT_SECONDS = 10.0


def _response(uid: str, allowed: bool, **extra: Any) -> JSON:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": allowed, **extra},
    }


def _deny(uid: str, message: str) -> JSON:
    return _response(uid, False, status={"code": 400, "reason": "BadRequest", "message": message})


def _patched(uid: str, ops: list[JSON], warnings: list[str] | None = None) -> JSON:
    extra: JSON = {}
    if ops:
        extra["patchType"] = "JSONPatch"
        extra["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    if warnings:
        extra["warnings"] = warnings
    return _response(uid, True, **extra)


def admit(path: str, review: JSON, lookup: ModelLookup, settings: MaterializeConfig) -> JSON:
    """The AdmissionReview answer for one request."""
    request = review.get("request") or {}
    uid = str(request.get("uid", ""))
    obj = request.get("object") or {}
    kind = (request.get("kind") or {}).get("kind", "")
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    namespace = request.get("namespace") or meta.get("namespace") or ""
    try:
        if path == PODS_PATH and kind == "Pod":
            if request.get("operation") != "CREATE" or not has_references(annotations):
                return _patched(uid, [])
            refs = parse_references(annotations, namespace)
            state = readiness(refs, lookup)
            warnings = [state.message] if isinstance(state, Waiting) else None
            return _patched(uid, inject_pod(obj, refs, state, settings), warnings)
        if path == WORKLOADS_PATH and kind in WORKLOAD_KINDS:
            if has_references(annotations):
                parse_references(annotations, namespace)
            return _patched(uid, copy_to_template(obj, kind))
    except ConsumptionRefused as refused:
        return _deny(uid, f"{refused.reason}: {refused}")
    return _patched(uid, [])  # not ours: a misconfigured rule must not block anything


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer

    def _body(self) -> bytes:
        """The request body, plain or chunked (the API server sends chunked), at most
        ``MAX_REVIEW_BYTES``; ``ValueError`` when malformed or too large."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_REVIEW_BYTES:
                raise ValueError("body too large")
            return self.rfile.read(length)
        body = bytearray()
        while True:
            size = int(self.rfile.readline(64).split(b";")[0].strip() or b"x", 16)
            if size < 0 or len(body) + size > MAX_REVIEW_BYTES:
                raise ValueError("body too large")
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline(8)

    def do_POST(self) -> None:
        self.close_connection = True
        path = self.path.split("?", 1)[0]  # the API server appends ?timeout=<n>s
        if path not in (PODS_PATH, WORKLOADS_PATH):
            self.send_error(404)
            return
        try:
            review = json.loads(self._body())
            answer = admit(path, review, self.server.lookup, self.server.settings)
        except (ValueError, AttributeError) as error:
            self.send_error(400, f"not an AdmissionReview: {type(error).__name__}")
            return
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass  # every admission would be a log line; refusals are visible to the user


class WebhookServer(ConnectionServer):
    """HTTPS: the listening socket is plain; each accepted connection is wrapped (and its
    handshake done) in its own thread with a timeout, so a slow client blocks nobody."""

    def __init__(
        self,
        address: str,
        port: int,
        lookup: ModelLookup,
        settings: MaterializeConfig,
        cert_pem: bytes,
        key_pem: bytes,
    ) -> None:
        self.lookup = lookup
        self.settings = settings
        self._dir = tempfile.mkdtemp(prefix="ai-models-webhook-")
        self._loaded: tuple[bytes, bytes] | None = None
        context = server_context()
        super().__init__(
            (address, port),
            _Handler,
            timeout_seconds=CONNECTION_TIMEOUT_SECONDS,
            name="webhook",
            context=context,
        )
        self.reload(cert_pem, key_pem)

    def reload(self, cert_pem: bytes, key_pem: bytes) -> bool:
        """Serves new connections with this certificate; ``False`` when it is the same one."""
        if self._loaded == (cert_pem, key_pem):
            return False
        cert, key = Path(self._dir, "tls.crt"), Path(self._dir, "tls.key")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        cert.write_bytes(cert_pem)
        assert self.context is not None
        self.context.load_cert_chain(cert, key)
        self._loaded = (cert_pem, key_pem)
        return True


def start_webhook(
    kube: KubeClient,
    config: Config,
    lookup: ModelLookup,
    stop: threading.Event,
    refresh_seconds: float = 60.0,
) -> WebhookServer:
    """Provisions the certificate, trusts it in the MutatingWebhookConfiguration, serves; every
    ``refresh_seconds`` re-reads the Secret (reloading a changed certificate) and re-syncs the
    caBundle (a chart upgrade may have reset it). Stops serving when ``stop`` is set."""
    settings, namespace = config.webhook, config.system_namespace
    hosts = service_hosts(settings.service_name, namespace)

    def certificate() -> tuple[bytes, bytes]:
        cert = ensure_certificate(
            kube, namespace, settings.tls_secret_name, hosts, list(settings.ip_addresses)
        )
        sync_ca_bundle(kube, settings.configuration_name, cert.ca_pem)
        return cert.cert_pem, cert.key_pem

    server = WebhookServer(
        settings.bind_address, settings.port, lookup, settings.materialize, *certificate()
    )
    server.start()

    def refresh() -> None:
        while not stop.wait(refresh_seconds):
            try:
                if server.reload(*certificate()):
                    log.info("webhook certificate reloaded")
            except KubeError as error:
                log.warning("webhook certificate not refreshed", error=str(error))
        server.shutdown()
        server.server_close()

    threading.Thread(target=refresh, name="webhook-tls", daemon=True).start()
    return server
