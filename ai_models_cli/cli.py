"""``ai-models`` (also ``kubectl ai-models``, installed as ``kubectl-ai_models``).

    ai-models upload model NAME [-n NS] PATH [options]
    ai-models upload clustermodel NAME PATH [options]

Uploads PATH into the object's upload session (``spec.source.upload``): waits for the session
(phase ``WaitForUpload``), reads its Secret with your kubeconfig, sends a file as it is or a
directory as a tar stream made on the fly, resuming an interrupted upload of the same PATH, then
waits for the object to be Ready and prints its digest and resolved metadata (docs/upload.md).

Exit codes: 0 done; 1 transient (the network, the API server, a timeout, the object Failed —
run again, or retry the object); 2 permanent (the arguments, PATH, access, or a gateway answer
such as ``Unauthorized``, ``UploadExpired``, ``TooLarge``, ``UnsupportedFormat``); 130 after
Ctrl-C (the upload stays resumable: run the same command again).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from ai_models_cli.errors import (
    INTERRUPTED_EXIT,
    CliError,
    ModelFailed,
    NotAnUpload,
    SessionTimeout,
    UsageError,
)
from ai_models_cli.gateway import GatewayClient
from ai_models_cli.kube import Cluster, Kind
from ai_models_cli.payload import Payload, open_payload
from ai_models_cli.progress import ProgressReporter, human_bytes
from ai_models_cli.status import Observed, describe, observe
from ai_models_cli.upload import Uploader
from api.upload import API_PREFIX, KEY_IN_CLUSTER_URL, KEY_TOKEN, KEY_URL

DEFAULT_TIMEOUT = 3600.0
POLL_SECONDS = 1.0


def build_parser(prog: str = "ai-models") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Work with ai-models Models.")
    commands = parser.add_subparsers(dest="command", required=True)
    upload = commands.add_parser(
        "upload", help="upload a file or a directory into a Model's upload session"
    )
    kinds = upload.add_subparsers(dest="kind", required=True, metavar="{model,clustermodel}")
    for kind, help_text in (("model", "a namespaced Model"), ("clustermodel", "a ClusterModel")):
        sub = kinds.add_parser(kind, help=help_text)
        sub.add_argument("name")
        sub.add_argument("path", type=Path, help="a directory, or a .gguf/.safetensors/archive")
        if kind == "model":
            sub.add_argument("-n", "--namespace", help="the Model's namespace (else the context's)")
        _common_options(sub)
    return parser


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--in-cluster",
        action="store_true",
        help="send to the Secret's inClusterURL (when running inside the cluster)",
    )
    parser.add_argument(
        "--url",
        help="the gateway's base URL to use instead of the Secret's, e.g. through "
        "`kubectl port-forward` (the session's path is kept)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the session, then for Ready (default {DEFAULT_TIMEOUT:.0f})",
    )
    parser.add_argument("--no-wait", action="store_true", help="exit once the upload is committed")
    parser.add_argument("--kubeconfig", help="a kubeconfig file (else KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", help="a kubeconfig context (else the current one)")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


@dataclass
class Target:
    kind: Kind
    name: str
    namespace: str | None

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind} {self.name}"
        )


@dataclass
class Context:
    """What one run talks to and writes to; the tests give fakes."""

    cluster: Cluster
    stdout: TextIO
    stderr: TextIO
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    client: Callable[[str, str], GatewayClient] = GatewayClient


def _poll(ctx: Context, target: Target, timeout: float, done: Callable[[Observed], bool]) -> Any:
    """Reads the object every second until ``done``; prints each change of its state."""
    deadline = ctx.clock() + timeout
    last = ""
    while True:
        obj = ctx.cluster.get_model(target.kind, target.name, target.namespace)
        seen = observe(obj)
        if not seen.is_upload:
            raise NotAnUpload(f"{target} has no spec.source.upload: it is not filled by an upload")
        if seen.summary != last:
            last = seen.summary
            ctx.stderr.write(f"{target}: {last}\n")
            ctx.stderr.flush()
        if seen.phase == "Failed":
            raise ModelFailed(f"{target} failed: {seen.reason}: {seen.message}")
        if done(seen):
            return obj
        if ctx.clock() >= deadline:
            raise SessionTimeout(f"{target}: not done within {timeout:.0f} s ({last})")
        ctx.sleep(POLL_SECONDS)


def _session_url(secret: dict[str, str], in_cluster: bool, override: str | None) -> str:
    url = secret.get(KEY_IN_CLUSTER_URL if in_cluster else KEY_URL, "")
    if not url:
        raise UsageError(
            f"the session Secret has no {KEY_IN_CLUSTER_URL if in_cluster else KEY_URL}"
        )
    if override:
        path = urlsplit(url).path
        if not path.startswith(API_PREFIX + "/"):
            raise UsageError(f"the session URL's path is not under {API_PREFIX}: {path}")
        return override.rstrip("/") + path
    return url


def upload(ctx: Context, target: Target, payload: Payload, args: argparse.Namespace) -> int:
    obj = _poll(
        ctx,
        target,
        args.timeout,
        lambda s: s.upload is not None or s.phase in ("Publishing", "Ready"),
    )
    seen = observe(obj)
    if seen.phase == "Ready":
        ctx.stderr.write(f"{target} is already Ready: nothing was uploaded\n")
        ctx.stdout.write(describe(obj))
        return 0
    if seen.upload is not None and seen.phase == "WaitForUpload":
        name, namespace = seen.upload.secret_name or "", seen.upload.secret_namespace or ""
        secret = ctx.cluster.read_secret(name, namespace)
        url = _session_url(secret, args.in_cluster, args.url)
        client = ctx.client(url, secret.get(KEY_TOKEN, ""))
        progress = ProgressReporter(ctx.stderr, clock=ctx.clock)
        uploader = Uploader(client, payload, progress, sleep=ctx.sleep)
        ctx.stderr.write(
            f"uploading {payload.filename} ({human_bytes(payload.size)}) to {target}\n"
        )
        try:
            outcome = uploader.run()
        except KeyboardInterrupt:
            at = uploader.confirmed
            ctx.stderr.write(f"interrupted at {at:,} bytes; run the same command again to resume\n")
            return INTERRUPTED_EXIT
        if outcome.result is None:
            ctx.stderr.write("the session already holds a committed upload\n")
        else:
            ctx.stderr.write(
                f"uploaded {outcome.result.filename}: {outcome.result.digest}, "
                f"{outcome.result.size:,} bytes; sent {outcome.sent:,} bytes in this run "
                f"(resumed at {outcome.resumed_at:,})\n"
            )
    if args.no_wait:
        return 0
    obj = _poll(ctx, target, args.timeout, lambda s: s.phase == "Ready")
    ctx.stdout.write(describe(obj))
    return 0


def _target(args: argparse.Namespace, cluster: Cluster) -> Target:
    if args.kind == "model":
        return Target("Model", args.name, args.namespace or cluster.namespace)
    return Target("ClusterModel", args.name, None)


def main(argv: list[str] | None = None) -> int:
    prog = Path(sys.argv[0]).name
    parser = build_parser("kubectl ai-models" if prog.startswith("kubectl-") else "ai-models")
    args = parser.parse_args(argv)
    try:
        payload = open_payload(args.path)
        cluster = Cluster.connect(args.kubeconfig, args.context)
        return upload(
            Context(cluster, sys.stdout, sys.stderr), _target(args, cluster), payload, args
        )
    except CliError as error:
        sys.stderr.write(f"{error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return INTERRUPTED_EXIT
