"""``ai-models-catalog-server``: the catalog server's entry point (docs/catalog-protocol.md).

Configuration: the controller's configuration file (the registry's host, prefix, CA secret
mount), a serving certificate and key, the Secrets of the client tokens (key ``token``) and of
the grant key (key ``key``, at least 32 bytes) in the server's namespace. Without a grant key
Secret a random key is made at start: right for one replica only (each replica would refuse
the others' grants). Secret values are never logged and never on the command line.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

import structlog

from api.catalog_protocol import DEFAULT_GRANT_TTL_SECONDS, PUBLISH_SELECTOR
from catalog.auth import ClientTokens, FailureLimiter
from catalog.cluster import Models, SecretMissing, Upstream, secret_value
from catalog.grants import MIN_KEY_BYTES, GrantSigner
from catalog.server import CatalogServer, Parts
from controller.config import ConfigError, load_config
from controller.errors import KubeError
from controller.httpserver import serve_until_signalled
from controller.kube import KubeApi, KubeClient, load_api_client
from oci.errors import OciError
from oci.server_client import server_registry_client

log = structlog.get_logger("catalog")
MIN_GRANT_TTL_SECONDS = 5
MAX_GRANT_TTL_SECONDS = 3600


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ai-models-catalog-server")
    add = parser.add_argument
    add("--config", type=Path, default=env("AI_MODELS_CONFIG"))
    add("--kubeconfig", default=env("KUBECONFIG"))
    add("--namespace", default=env("POD_NAMESPACE", "d8-ai-models"), help="of the Secrets")
    add("--bind-address", default="0.0.0.0")  # noqa: S104 - a server in a pod
    add("--port", type=int, default=8443)
    add("--tls-cert", type=Path, required=env("AI_MODELS_CATALOG_TLS_CERT") is None,
        default=env("AI_MODELS_CATALOG_TLS_CERT"))  # fmt: skip
    add("--tls-key", type=Path, required=env("AI_MODELS_CATALOG_TLS_KEY") is None,
        default=env("AI_MODELS_CATALOG_TLS_KEY"))  # fmt: skip
    add("--client-secret", action="append", default=[], help="Secret with key 'token' (repeat)")
    add("--grant-key-secret", help="Secret with key 'key' (shared by every replica)")
    add("--grant-ttl", type=int, default=DEFAULT_GRANT_TTL_SECONDS, help="grant lifetime, s")
    add("--selector", default=PUBLISH_SELECTOR, help="label selector of published ClusterModels")
    add("--public-host", help="host[:port] clients reach this server at (default: Host header)")
    add("--list-cache-seconds", type=float, default=5.0)
    add("--secret-cache-seconds", type=float, default=30.0)
    add("--max-bad-tokens", type=int, default=10, help="per client address and minute")
    add("--registry-auth-file", type=Path, default=env("REGISTRY_AUTH_FILE"))
    add("--registry-ca", type=Path, default=env("AI_MODELS_REGISTRY_CA"))
    return parser


def _grant_key(args: argparse.Namespace, kube: KubeApi) -> bytes:
    if not args.grant_key_secret:
        log.warning("no grant key Secret: a random key, valid for this replica only")
        return secrets.token_bytes(MIN_KEY_BYTES)
    key = secret_value(kube, args.namespace, args.grant_key_secret, "key")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the grant key Secret's key has fewer than {MIN_KEY_BYTES} bytes")
    return key


def _client_tokens(args: argparse.Namespace, kube: KubeApi) -> ClientTokens:
    names: list[str] = args.client_secret
    if not names:
        raise ConfigError("give at least one --client-secret")

    def read() -> list[str]:
        tokens = []
        for name in names:
            try:
                tokens.append(secret_value(kube, args.namespace, name, "token").decode().strip())
            except (SecretMissing, UnicodeDecodeError) as error:
                log.warning("client token Secret unusable", error=str(error))
        return tokens

    return ClientTokens(read, args.secret_cache_seconds)


def build_server(args: argparse.Namespace, kube: KubeApi) -> CatalogServer:
    """Everything wired; ``ConfigError``, ``SecretMissing``, ``OciError`` when misconfigured."""
    if not MIN_GRANT_TTL_SECONDS <= args.grant_ttl <= MAX_GRANT_TTL_SECONDS:
        raise ConfigError(
            f"--grant-ttl must be {MIN_GRANT_TTL_SECONDS}..{MAX_GRANT_TTL_SECONDS} seconds"
        )
    registry = load_config(args.config).registry
    client = server_registry_client(
        registry.host,
        insecure=registry.insecure,
        ca_file=args.registry_ca,
        auth_file=args.registry_auth_file,
    )
    parts = Parts(
        models=Models(kube, args.selector, registry.prefix, args.list_cache_seconds),
        tokens=_client_tokens(args, kube),
        limiter=FailureLimiter(max_failures=args.max_bad_tokens),
        signer=GrantSigner(_grant_key(args, kube), args.grant_ttl),
        upstream=Upstream(client),
        public_host=args.public_host,
    )
    return CatalogServer(args.bind_address, args.port, parts, (args.tls_cert, args.tls_key))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def started(server: CatalogServer) -> None:
        log.info("serving", port=server.port, selector=args.selector, grant_ttl=args.grant_ttl)

    return serve_until_signalled(
        "ai-models-catalog-server",
        lambda: build_server(args, KubeClient(load_api_client(args.kubeconfig))),
        (ConfigError, SecretMissing, KubeError, OciError, OSError, ValueError),
        started,
    )
