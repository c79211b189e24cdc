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
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import structlog

from api import protocol
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
CHUNK_SIZE = 8 << 20
"""Bytes per registry PATCH, and the most a request holds in memory."""
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
        settings=RegistrySettings(attempts=3, chunk_size=CHUNK_SIZE),
    )
    store = RecordStore(kube, args.system_namespace)
    book = ProgressBook(store)
    operations = Uploads(registry, store, book, CHUNK_SIZE)
    auth = TokenCheck(store, AttemptLimiter())
    return GatewayServer(args.bind_address, args.port, auth, operations, book)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        server = build_server(args, KubeClient(load_api_client(args.kubeconfig)))
    except (ConfigError, OciError, OSError) as error:
        print(f"ai-models-upload-gateway: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    flusher = threading.Thread(target=server.book.run, args=(stop,), name="progress", daemon=True)
    flusher.start()
    log.info("serving", port=server.port, registry=args.registry_host,
             namespace=args.system_namespace)  # fmt: skip
    stop.wait()
    server.shutdown()
    server.server_close()
    flusher.join(timeout=10)
    return 0
