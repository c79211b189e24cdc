"""What ``ai-models-worker`` does once its arguments are valid (``worker/cli.py`` documents the
command line): logging, the command, and the one JSON line of its result or failure."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

import structlog

from api import protocol
from oci.errors import InvalidReference
from worker import logs, shutdown
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


def settle_imports() -> None:
    """Called once the command's modules are loaded (``worker.cli`` turned the cyclic collector
    off before importing them: loading them triggered collections that found nothing, about
    0.04 s). Their objects live until exit, so they are frozen: no collection walks them again,
    and the interpreter's final collection at exit, which took about 0.1 s over this many
    modules, skips them too. What the command allocates is collected as usual."""
    gc.freeze()
    gc.enable()


def run(args: argparse.Namespace) -> int:
    configure_logging()
    limit_heap_retention()
    # prepare stops its transfers cleanly (the registry keeps what it has); the pull commands
    # exit at once (their partial files resume). Either way not ignored as PID 1.
    shutdown.install(graceful=args.command == "prepare")
    if args.command in ("materialize", "materialize-pod"):
        from worker import commands_pull  # a pod's init container: none of the prepare side
    else:
        from worker import commands  # the heavy imports wait until the arguments are valid

    settle_imports()

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
            emit(commands_pull.materialize_pod(args.digests, args.token, args.endpoint, args.dest))
        else:
            emit(commands_pull.materialize(args.ref, args.dest))
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
