"""The worker's last log lines as both sides see them: redacted and bounded.

The worker keeps its last log lines and writes them into the termination log beside
``{reason, message}`` (key ``log``), so a user who cannot read the system namespace still sees
what the failing attempt did; the controller reads them back into an Event. The worker never
logs credentials, but both sides strip anything shaped like one anyway, and both bound the
lines: at most ``MAX_LINES`` lines of at most ``MAX_LINE`` characters, ``MAX_BYTES`` in all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_LINES = 10
MAX_LINE = 400
MAX_BYTES = 2048
REDACTED = "[redacted]"
_SECRETS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\bhf_[A-Za-z0-9]+"),
    re.compile(
        r"(?i)\b(token|password|passwd|secret|authorization)([\"']?\s*[=:]\s*[\"']?)"
        r"(?!(?:bearer|basic)\s|\[redacted\])[^\s\"',}]+"
    ),
)


def redact(line: str) -> str:
    """``line`` with every credential-shaped word replaced (scheme and key names kept)."""
    line = _SECRETS[0].sub(lambda m: f"{m.group(1)} {REDACTED}", line)
    line = _SECRETS[1].sub(REDACTED, line)
    return _SECRETS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", line)


def bounded(lines: Iterable[object]) -> list[str]:
    """The last lines that fit the bounds, oldest first; non-strings dropped, each redacted,
    control characters (but tabs) replaced, long lines cut."""
    kept: list[str] = []
    total = 0
    for raw in reversed([line for line in lines if isinstance(line, str)][-MAX_LINES:]):
        clean = redact("".join(c if c.isprintable() or c == "\t" else " " for c in raw))
        line = clean[:MAX_LINE] + ("…" if len(clean) > MAX_LINE else "")
        size = len(line.encode()) + 1
        if total + size > MAX_BYTES:
            break
        kept.append(line)
        total += size
    return kept[::-1]
