"""How many examples the property tests draw: all in ``make test``, a tenth in ``make unit``.

``AI_MODELS_FUZZ=quick`` (the Makefile's ``unit`` target) keeps the fast loop short; every other
run, ``make test`` and CI among them, draws the full count. The draws are derandomized either way,
so a quick run is repeatable too.
"""

from __future__ import annotations

import os

QUICK_SHARE = 10


def examples(full: int) -> int:
    if os.environ.get("AI_MODELS_FUZZ") == "quick":
        return max(1, full // QUICK_SHARE)
    return full
