"""The worker's log: lines for people by default, JSON lines when configured.

``AI_MODELS_LOG_FORMAT``: ``text`` (the default, also when unset or unknown) or ``json``; the
preparation Job passes the chart value ``worker.logFormat``. Everything goes to stderr; stdout
keeps the one machine-readable result line of the CLI.

A text line is time (UTC, milliseconds), level, message, then ``key=value`` pairs (values with
spaces or quotes in JSON quotes; ``None`` values left out)::

    2026-11-30T10:00:07.250Z info  transfer model.safetensors 37% 32.1/87.3 MiB 8.1 MiB/s ETA 7s

A JSON line is ``{"timestamp", "level", "event", …}``, one object per line.

The last ``api.logtail.MAX_LINES`` lines (in the text form, whatever the output format) are
kept; ``with_tail`` adds them, redacted and bounded, to the termination message, so the
controller can show a failing attempt's last lines to a user who cannot read the system
namespace.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

from api import logtail
from api.protocol import ENV_AI_MODELS_LOG_FORMAT

TERMINATION_MESSAGE_BYTES = 4096  # the kubelet's limit for one container's termination message
LEVELS = {"warning": "warn", "critical": "error", "exception": "error"}
HIDDEN_IN_TEXT = ("progress",)
"""Keys whose machine figures the text line's message already says (JSON keeps them)."""

Clock = Callable[[], dt.datetime]
EventDict = MutableMapping[str, Any]
_tail: deque[str] = deque(maxlen=logtail.MAX_LINES)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if text == "" or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def text_line(event: EventDict) -> str:
    """One event as a line for people: time, level, message, key=value."""
    fields = dict(event)
    stamp, level = fields.pop("timestamp", ""), str(fields.pop("level", "info"))
    message = str(fields.pop("event", ""))
    trace = fields.pop("exception", None)
    pairs = [
        f"{k}={_value(v)}"
        for k, v in fields.items()
        if v is not None and k not in HIDDEN_IN_TEXT and not k.startswith("_")
    ]
    line = " ".join([stamp, f"{LEVELS.get(level, level):<5}", message, *pairs]).rstrip()
    return f"{line}\n{trace}" if trace else line


def _timestamper(clock: Clock) -> Callable[[Any, str, EventDict], EventDict]:
    def stamp(_: Any, __: str, event: EventDict) -> EventDict:
        now = clock().astimezone(dt.UTC)
        event["timestamp"] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        return event

    return stamp


def _keep(_: Any, __: str, event: EventDict) -> EventDict:
    _tail.append(text_line(event).splitlines()[0])
    return event


def _render_text(_: Any, __: str, event: EventDict) -> str:
    return text_line(event)


def log_format(env: MutableMapping[str, str] | None = None) -> str:
    source = env if env is not None else os.environ
    value = source.get(ENV_AI_MODELS_LOG_FORMAT, "").strip().lower()
    return "json" if value == "json" else "text"


def configure(
    stream: TextIO | None = None,
    env: MutableMapping[str, str] | None = None,
    clock: Clock = _utc_now,
) -> None:
    """Sets up structlog for the worker: the format from ``AI_MODELS_LOG_FORMAT``, lines on
    ``stream`` (stderr), the tail kept for the termination message."""
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if log_format(env) == "json"
        else _render_text
    )
    _tail.clear()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            _timestamper(clock),
            _keep,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def tail() -> list[str]:
    """The last lines logged (text form), oldest first."""
    return list(_tail)


def with_tail(payload: dict[str, str]) -> dict[str, Any]:
    """``payload`` (``{reason, message}``) plus ``log``: the last lines, redacted, bounded and
    cut from the oldest end until the whole JSON fits the kubelet's 4 KiB."""
    lines = logtail.bounded(tail())
    while True:
        document: dict[str, Any] = {**payload, "log": lines} if lines else dict(payload)
        if len(json.dumps(document, ensure_ascii=True)) <= TERMINATION_MESSAGE_BYTES or not lines:
            return document
        lines = lines[1:]


def result(payload: dict[str, Any]) -> None:
    """A timestamped line for the result just written to stdout (people read the log; stdout
    keeps the machine-readable line)."""
    artifact = payload.get("artifact") if isinstance(payload.get("artifact"), dict) else None
    log = structlog.get_logger("worker")
    if artifact is not None:
        log.info("result on stdout", digest=artifact.get("digest"), size=artifact.get("sizeBytes"))
    else:
        log.info("result on stdout")
