"""``ai-models-worker``: prepare, inspect, materialize.

    ai-models-worker prepare SOURCE --to DEST      source → ModelPack artifact (registry or dir)
    ai-models-worker inspect SOURCE                metadata only, no weight download
    ai-models-worker materialize REF --to DIR      artifact (by digest) → files in a directory
    ai-models-worker materialize-pod --digests F --token F --endpoint URL --to DIR
                                                   a consuming pod's models from the delivery
                                                   endpoint (the injected init container)

SOURCE: ``https://huggingface.co/<org>/<repo>[/tree/<rev>][?revision=…][&file=<name>.gguf]``,
``https://ollama.com/library/<name>[:tag]``, or a local directory / ``.gguf`` / ``.safetensors``.
DEST / REF: ``host[:port]/repository[:tag|@digest]`` or a local OCI layout directory
``dir[:tag|@digest]`` (absolute, ``./…``, or a relative path whose first component is not a
host: one with a dot, a port or ``localhost``; a layout DEST without a tag is tagged ``latest``).

Success prints one JSON line on stdout (for ``prepare``: ``{artifact, resolved, source}``, the
exact shapes of the status fields; ``inspect --json``: ``{resolved, source, files, notes}``) and
exits 0. Failure prints one JSON line ``{"reason", "message"}`` on stderr, writes it to the
termination log in a pod, and exits 2 when permanent (fix the source) or 1 when transient
(retry). Logs go to stderr: a line per event for people (time, level, message, key=value),
JSON lines with ``AI_MODELS_LOG_FORMAT=json`` (``worker/logs.py``).

Environment (the Job sets those ``api/protocol.py`` names; all optional on a laptop):
``POD_NAME``/``POD_NAMESPACE`` (report progress and the result on this pod), ``HF_ENDPOINT``,
``HF_TOKEN`` or ``HF_TOKEN_PATH``, ``OLLAMA_REGISTRY``, ``SOURCES_CA_BUNDLE``,
``DOCKER_CONFIG`` (directory with ``config.json``: registry credentials),
``AI_MODELS_REGISTRY_CA``, ``AI_MODELS_REGISTRY_INSECURE``, ``AI_MODELS_REGISTRY_ATTEMPTS``,
``AI_MODELS_WORKSPACE``, ``AI_MODELS_PROGRESS_INTERVAL``, ``AI_MODELS_TRANSFER_CONCURRENCY``,
``AI_MODELS_TERMINATION_LOG``, ``AI_MODELS_LOG_FORMAT`` (``text``, the default, or ``json``);
``materialize-pod``: ``AI_MODELS_DELIVERY_CA`` (CA file of an HTTPS delivery endpoint),
``POD_NAMESPACE`` (else the token's namespace claim).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import structlog

from api import protocol
from oci.errors import InvalidReference
from worker import logs
from worker.errors import (
    InsufficientStorage,
    PermanentError,
    WorkerError,
    is_out_of_space,
)
from worker.memory import limit_heap_retention
from worker.oci.layout import InvalidLayout

log = structlog.get_logger("worker")


def configure_logging() -> None:
    logs.configure()  # text lines for people, or JSON (AI_MODELS_LOG_FORMAT): worker/logs.py


def write_termination(payload: dict[str, str]) -> None:
    """In a pod (``POD_NAME`` set) the kubelet reads ``/dev/termination-log``; on a laptop no
    such file is written unless ``AI_MODELS_TERMINATION_LOG`` names one."""
    configured = os.environ.get("AI_MODELS_TERMINATION_LOG")
    if not configured and not os.environ.get(protocol.ENV_POD_NAME):
        return
    path = Path(configured or protocol.TERMINATION_LOG_PATH)
    try:
        with path.open("w") as handle:
            handle.write(json.dumps(logs.with_tail(payload), ensure_ascii=True))
    except OSError:
        pass  # not in a pod (or not writable): stdout carries the same JSON


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
    sys.stdout.flush()
    logs.result(payload)


class InvalidDestination(PermanentError):  # noqa: N818 - named after its reason
    """DEST (or REF) is neither a valid OCI reference nor a usable directory."""

    reason = "InvalidDestination"


def _out_of_space(error: OSError, args: argparse.Namespace) -> InsufficientStorage:
    """A full disk that no lower layer reported: names the file when known, else the directory
    written to (DEST of ``materialize`` or of a layout; the workspace for a registry DEST)."""
    where = error.filename
    if where is None:
        from worker.oci.target import is_layout_path

        dest = str(args.dest)
        registry_dest = args.command == "prepare" and not is_layout_path(dest)
        where = os.environ.get(protocol.ENV_AI_MODELS_WORKSPACE, ".") if registry_dest else dest
    return InsufficientStorage(
        f"{where}: no space left on its device ({error.strerror}); free space or give the "
        "worker a larger volume, then run again"
    )


def fail(error: WorkerError) -> int:
    """The failure as one JSON line ``{reason, message}`` on stderr (no traceback), the same in
    the termination log; exit 2 when permanent, 1 when transient."""
    payload = error.to_termination_message()
    write_termination(payload)
    sys.stderr.write(json.dumps(payload, ensure_ascii=False) + "\n")
    sys.stderr.flush()
    return error.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai-models-worker", description="Prepare AI models as ModelPack OCI artifacts."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="source → ModelPack artifact")
    prepare.add_argument("source")
    prepare.add_argument("--to", dest="dest", required=True, help="registry reference or directory")
    inspect = commands.add_parser(
        "inspect", help="print resolved metadata without downloading weights"
    )
    inspect.add_argument("source")
    inspect.add_argument(
        "--json", action="store_true", help="one JSON object instead of a readable summary"
    )
    materialize = commands.add_parser("materialize", help="artifact → directory")
    materialize.add_argument("ref")
    materialize.add_argument("--to", dest="dest", required=True, type=Path)
    pod = commands.add_parser(
        "materialize-pod", help="a pod's models (digests file) from the delivery endpoint → DIR"
    )
    pod.add_argument("--digests", required=True, type=Path, help="the digests annotation file")
    pod.add_argument("--token", required=True, type=Path, help="the projected token FILE")
    pod.add_argument("--endpoint", required=True, help="http(s)://host:port of the delivery")
    pod.add_argument("--to", dest="dest", required=True, type=Path, help="/models")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    limit_heap_retention()
    from worker import commands  # the heavy imports wait until the arguments are valid

    try:
        if args.command == "prepare":
            emit(commands.prepare(args.source, args.dest))
        elif args.command == "inspect":
            found = commands.inspect(args.source)
            if args.json:
                emit(found)
            else:
                sys.stdout.write(commands.describe(found))
        elif args.command == "materialize-pod":
            emit(commands.materialize_pod(args.digests, args.token, args.endpoint, args.dest))
        else:
            emit(commands.materialize(args.ref, args.dest))
    except WorkerError as error:
        return fail(error)
    except (InvalidReference, InvalidLayout) as error:
        return fail(InvalidDestination(str(error)))
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if is_out_of_space(error):
            return fail(_out_of_space(error, args))
        log.exception("unexpected failure")
        payload = {"reason": "WorkerCrashed", "message": f"{type(error).__name__}: {error}"[:2000]}
        write_termination(payload)
        sys.stderr.write(json.dumps(payload) + "\n")
        return protocol.TRANSIENT_EXIT_CODE
    return protocol.SUCCESS_EXIT_CODE
