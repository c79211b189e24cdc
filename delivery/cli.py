"""``ai-models-delivery``: the node-local delivery endpoint (one per node, a DaemonSet).

    ai-models-delivery [--config PATH] [--kubeconfig PATH] [--port 9444] [--bind-address ADDR]
                       [--cache-dir DIR] [--cache-size BYTES] [--tls-cert F --tls-key F]
                       [--registry-auth-file F] [--registry-ca F]

The registry (host, prefix, insecure) and the token audience come from the controller's own
configuration file (``--config`` / ``AI_MODELS_CONFIG``: the chart's ConfigMap, the same for
both), so the two never disagree. The registry's docker config JSON and CA are files mounted
from the Secrets of the system namespace (``--registry-auth-file`` / ``REGISTRY_AUTH_FILE``,
``--registry-ca`` / ``AI_MODELS_REGISTRY_CA``). A bad configuration exits with code 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import structlog

from controller.config import ConfigError, load_config
from controller.httpserver import serve_until_signalled
from controller.kube import KubeClient, load_api_client
from delivery.access import Gatekeeper
from delivery.cache import BlobStore
from delivery.kubelookup import ModelLookup, PodAuthenticator
from delivery.metrics import DeliveryMetrics
from delivery.server import DeliveryServer
from delivery.upstream import Upstream
from oci.errors import OciError
from oci.server_client import server_registry_client

log = structlog.get_logger("delivery")
_UNITS = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}


def parse_size(text: str) -> int:
    """``100Gi``, ``512Mi``, ``1048576``: bytes (a Kubernetes binary quantity)."""
    for unit in sorted(_UNITS, key=len, reverse=True):
        number = text.removesuffix(unit)
        if (unit == "" or text.endswith(unit)) and number.isdigit():
            return int(number) * _UNITS[unit]
    raise ValueError(f"{text!r} is not a size such as 100Gi, 512Mi or a number of bytes")


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="ai-models-delivery", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=env("AI_MODELS_CONFIG"))
    parser.add_argument("--kubeconfig", default=env("KUBECONFIG_PATH"))
    parser.add_argument("--bind-address", default=env("AI_MODELS_DELIVERY_BIND", "0.0.0.0"))  # noqa: S104
    parser.add_argument("--port", type=int, default=int(env("AI_MODELS_DELIVERY_PORT", "9444")))
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(env("AI_MODELS_CACHE_DIR", "/var/lib/ai-models/cache")),
    )
    parser.add_argument(
        "--cache-size", type=parse_size, default=env("AI_MODELS_CACHE_SIZE", "100Gi")
    )
    parser.add_argument("--tls-cert", type=Path, default=env("AI_MODELS_DELIVERY_TLS_CERT"))
    parser.add_argument("--tls-key", type=Path, default=env("AI_MODELS_DELIVERY_TLS_KEY"))
    parser.add_argument("--registry-auth-file", type=Path, default=env("REGISTRY_AUTH_FILE"))
    parser.add_argument("--registry-ca", type=Path, default=env("AI_MODELS_REGISTRY_CA"))
    parser.add_argument(
        "--review-ttl", type=float, default=30.0, help="seconds a token's review is kept"
    )
    return parser


def build_server(args: argparse.Namespace, kube: KubeClient) -> DeliveryServer:
    """Everything wired; ``ConfigError`` / ``OciError`` on a bad configuration."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("give both --tls-cert and --tls-key, or neither (plain HTTP)")
    config = load_config(args.config)
    registry = config.registry
    client = server_registry_client(  # blob pieces: upstream.BLOB_PIECE_BYTES
        registry.host,
        insecure=registry.insecure,
        ca_file=args.registry_ca,
        auth_file=args.registry_auth_file,
    )
    metrics = DeliveryMetrics()
    audience = config.webhook.materialize.token_audience
    gatekeeper = Gatekeeper(
        PodAuthenticator(kube, audience, ttl=args.review_ttl),
        ModelLookup(kube),
        Upstream(client, registry.prefix),
    )
    store = BlobStore(args.cache_dir, args.cache_size, metrics)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert and args.tls_key else None
    return DeliveryServer(args.bind_address, args.port, gatekeeper, store, metrics, tls)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def started(server: DeliveryServer) -> None:
        log.info("serving", port=server.port, cache=str(args.cache_dir), budget=args.cache_size,
                 tls=args.tls_cert is not None)  # fmt: skip

    return serve_until_signalled(
        "ai-models-delivery",
        lambda: build_server(args, KubeClient(load_api_client(args.kubeconfig))),
        (ConfigError, OciError, OSError),
        started,
    )
