"""``ai-models-controller``: load the configuration, connect, run until SIGTERM.

    ai-models-controller [--config PATH] [--kubeconfig PATH]

The configuration path also comes from ``AI_MODELS_CONFIG``; without one every default applies.
An invalid configuration exits with code 2 and a message naming the key.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import os
import signal
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from types import FrameType
from typing import TextIO

import structlog

from controller.config import Config, ConfigError, load_config
from controller.errors import KubeError
from controller.kube import SECRETS, KubeClient, load_api_client
from controller.manager import Manager
from controller.metrics import Metrics, serve_health, serve_metrics
from controller.registry import RegistryAccess, RegistryCleaner, credentials_from_docker_config
from controller.webhook import start_webhook

log = structlog.get_logger("controller")


def configure_logging(fmt: str, level: str, stream: TextIO | None = None) -> None:
    """One line per event on ``stream`` (stderr), JSON or for people. An exception logged with
    ``exc_info`` renders its traceback in both: a string field ``exception`` in JSON, the plain
    traceback under the line otherwise (never a formatter that prints local variables: they may
    hold tokens)."""
    renderer: structlog.types.Processor
    exceptions: list[structlog.types.Processor] = []
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        exceptions = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
    )


def _secret_bytes(data: object, origin: str) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except binascii.Error:
        raise ConfigError(f"{origin} is not base64") from None


def registry_cleaner(kube: KubeClient, config: Config) -> RegistryCleaner:
    """The registry client of finalization; ``ConfigError`` when the registry's auth Secret
    holds a malformed docker config (naming the Secret and key, never the content)."""
    registry, system = config.registry, config.system_namespace
    username = password = ca_file = None
    try:
        if registry.auth_secret_name:
            secret = kube.get(SECRETS, registry.auth_secret_name, system) or {}
            raw = (secret.get("data") or {}).get(".dockerconfigjson")
            origin = (
                f"registry.authSecretName: Secret {system}/{registry.auth_secret_name} "
                "key .dockerconfigjson"
            )
            if raw is None:
                log.warning("registry credentials not found", secret=origin)
            else:
                found = credentials_from_docker_config(
                    _secret_bytes(raw, origin), registry.host, origin
                )
                if found:
                    username, password = found
        if registry.ca_secret_name:
            secret = kube.get(SECRETS, registry.ca_secret_name, system) or {}
            pem = (secret.get("data") or {}).get("ca.crt", "")
            origin = f"registry.caSecretName: Secret {system}/{registry.ca_secret_name} key ca.crt"
            handle = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)  # noqa: SIM115
            handle.write(_secret_bytes(pem, origin))
            handle.close()
            ca_file = handle.name
    except KubeError as error:
        log.warning("registry credentials not loaded", error=str(error))
    access = RegistryAccess(registry.host, registry.insecure, ca_file, username, password)
    return RegistryCleaner(access)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ai-models-controller", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", type=Path, default=os.environ.get("AI_MODELS_CONFIG"))
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG_PATH"))
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"ai-models-controller: {error}", file=sys.stderr)
        return 2
    configure_logging(config.controller.log_format, config.controller.log_level)
    metrics = Metrics()
    kube = KubeClient(load_api_client(args.kubeconfig), on_request=metrics.count_request)
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    try:
        cleaner = registry_cleaner(kube, config)
    except ConfigError as error:
        print(f"ai-models-controller: {error}", file=sys.stderr)
        return 2
    manager = Manager(config, kube, identity, cleaner, metrics)
    if config.webhook.enabled:
        # Every replica serves admission (the API server may call any of them); only the leader
        # lifts scheduling gates.
        try:
            start_webhook(kube, config, manager.lookup, manager.stop)
        except (KubeError, OSError) as error:
            log.error("webhook not started", error=str(error))
            return 1
    settings = config.controller
    if settings.metrics_port:
        serve_metrics(manager.metrics, settings.bind_address, settings.metrics_port)
    if settings.health_port:
        serve_health(settings.bind_address, settings.health_port, manager.ready)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("shutting down", signal=signal.Signals(signum).name)
        manager.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("starting", identity=identity, system_namespace=config.system_namespace)
    return manager.run()
