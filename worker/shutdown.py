"""SIGTERM in the worker: stop the transfers cleanly, so the next run resumes.

A pod that is deleted, evicted or drained gets SIGTERM, then SIGKILL once its grace period
(30 s by default) is over. The worker is PID 1 of its container, and the kernel drops a signal
PID 1 has no handler for: without one the worker went on until the SIGKILL, which cut the
streamed PATCH open at that moment, and docker-registry then drops the whole upload session
(docs/oci.md, "What a kill costs").

``install`` sets a handler. For ``prepare``, the first SIGTERM raises ``STOP``: every transfer
stops at its next piece, an open streamed body *ends* there (the registry keeps those bytes and
answers with the session's location, which the upload journal records), and ``publish`` raises
``Interrupted`` (exit 1: transient); the next run resumes each file where the registry
stopped. A watchdog ends the process ``GRACE_SECONDS`` later if a transfer does not stop (a
registry that does not answer). For the pull commands a partial file is always resumable
(the journal; a killed writer is the case it is built for), so the process exits at once, with
the code a shell gives (143).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

STOP = threading.Event()
"""Set by the first SIGTERM of a ``prepare``: transfers stop at their next piece."""
GRACE_SECONDS = 20.0
"""From SIGTERM to a forced exit: below the kubelet's default grace period of 30 s."""
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


def install(graceful: bool) -> None:
    """Called in the main thread. ``graceful``: stop the transfers (``prepare``), else exit."""
    signal.signal(signal.SIGTERM, _graceful if graceful else _exit_now)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    sys.stderr.flush()
    os._exit(SIGTERM_EXIT_CODE)


def _graceful(signum: int, frame: FrameType | None) -> None:
    if STOP.is_set():  # a second SIGTERM: no more waiting
        _exit_now(signum, frame)
    STOP.set()
    watchdog = threading.Timer(GRACE_SECONDS, _exit_now, (signum, None))
    watchdog.daemon = True
    watchdog.start()
