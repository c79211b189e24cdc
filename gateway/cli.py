"""``ai-models-upload-gateway``: the upload gateway (a Deployment of the chart, N replicas).

    ai-models-upload-gateway --registry-host HOST [--registry-insecure] [--registry-ca F]
                             [--registry-auth-file F] [--system-namespace NS]
                             [--kubeconfig PATH] [--bind-address ADDR] [--port 8444]

The registry settings are the worker's: ``AI_MODELS_REGISTRY_HOST``,
``AI_MODELS_REGISTRY_INSECURE``, ``AI_MODELS_REGISTRY_CA``, and the push credentials as a docker
config (``REGISTRY_AUTH_FILE``, or ``DOCKER_CONFIG``/config.json). The system namespace (where
the session records are) defaults to ``POD_NAMESPACE``. In a pod the API server is reached with
the pod's ServiceAccount; elsewhere with ``--kubeconfig``. A bad configuration exits with 2.
"""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

import structlog

from api import protocol
from controller.httpserver import serve_until_signalled
from controller.kube import KubeClient, load_api_client
from gateway.auth import TokenCheck
from gateway.progress import ProgressBook
from gateway.ratelimit import AttemptLimiter
from gateway.records import RecordStore
from gateway.server import GatewayServer
from gateway.uploads import Uploads
from oci.auth import find_auth_file, load_credentials
from oci.errors import OciError
from oci.registry import RegistryClient, RegistrySettings

log = structlog.get_logger("gateway")
PIECE_SIZE = 1 << 20
"""Bytes read from a client at a time and passed on: the memory of a request."""
SEGMENT_SIZE = 64 << 20
"""Bytes per registry PATCH at most (a client's 8 MiB request is one PATCH; a PUT of a whole
file is cut into PATCHes of this size, so its progress shows)."""
DRAIN_SECONDS = 45.0
"""At SIGTERM, how long requests in flight may take (the chart's grace period is 60 s)."""
_TRUE = ("1", "true", "yes")


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="ai-models-upload-gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kubeconfig", default=env("KUBECONFIG_PATH"))
    parser.add_argument("--bind-address", default=env("AI_MODELS_GATEWAY_BIND", "0.0.0.0"))  # noqa: S104
    parser.add_argument("--port", type=int, default=int(env("AI_MODELS_GATEWAY_PORT", "8444")))
    parser.add_argument(
        "--system-namespace", default=env(protocol.ENV_POD_NAMESPACE), help="the records' namespace"
    )
    parser.add_argument("--registry-host", default=env("AI_MODELS_REGISTRY_HOST"))
    parser.add_argument(
        "--registry-insecure",
        action="store_true",
        default=env(protocol.ENV_AI_MODELS_REGISTRY_INSECURE, "").lower() in _TRUE,
    )
    parser.add_argument("--registry-ca", type=Path, default=env(protocol.ENV_AI_MODELS_REGISTRY_CA))
    parser.add_argument("--registry-auth-file", type=Path, default=None)
    return parser


class ConfigError(Exception):
    pass


def build_server(args: argparse.Namespace, kube: KubeClient) -> GatewayServer:
    """Everything wired; ``ConfigError`` / ``OciError`` on a bad configuration."""
    if not args.registry_host:
        raise ConfigError("the registry host is required (--registry-host)")
    if not args.system_namespace:
        raise ConfigError("the system namespace is required (--system-namespace)")
    credentials = load_credentials(args.registry_host, find_auth_file(args.registry_auth_file))
    registry = RegistryClient(
        args.registry_host,
        insecure=args.registry_insecure,
        ca_file=args.registry_ca,
        credentials=credentials,
        settings=RegistrySettings(attempts=3, chunk_size=PIECE_SIZE),
    )
    store = RecordStore(kube, args.system_namespace)
    book = ProgressBook(store)
    operations = Uploads(registry, store, book, PIECE_SIZE, SEGMENT_SIZE)
    auth = TokenCheck(store, AttemptLimiter())
    return GatewayServer(args.bind_address, args.port, auth, operations, book)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    drained = threading.Event()  # set last: the flusher writes every upload's position, then ends
    flushers: list[threading.Thread] = []

    def started(server: GatewayServer) -> None:
        flusher = threading.Thread(
            target=server.book.run, args=(drained,), name="progress", daemon=True
        )
        flusher.start()
        flushers.append(flusher)
        log.info("serving", port=server.port, registry=args.registry_host,
                 namespace=args.system_namespace)  # fmt: skip

    def stop(server: GatewayServer) -> None:
        if not server.drain(DRAIN_SECONDS):
            log.warning("stopping with requests in flight", after_seconds=DRAIN_SECONDS)
        server.server_close()
        drained.set()
        for flusher in flushers:
            flusher.join(timeout=10)

    return serve_until_signalled(
        "ai-models-upload-gateway",
        lambda: build_server(args, KubeClient(load_api_client(args.kubeconfig))),
        (ConfigError, OciError, OSError),
        started,
        stop,
    )
