"""The worker's last log lines, as both sides bound and redact them."""

from __future__ import annotations

from api import logtail


def test_credential_shaped_words_are_redacted() -> None:
    assert logtail.redact(
        "GET /api: Authorization: Bearer eyJ.abc-_ hf_AbC123 token=s3cr3t "
        '{"password": "p4ss"} basic dXNlcjpwYXNz'
    ) == (
        "GET /api: Authorization: Bearer [redacted] [redacted] token=[redacted] "
        '{"password": "[redacted]"} basic [redacted]'
    )
    assert logtail.redact("reference a token in authSecretRef") == (
        "reference a token in authSecretRef"
    )


def test_bounded_keeps_the_newest_lines_within_limits() -> None:
    lines = [f"line {i}" for i in range(20)]
    assert logtail.bounded([*lines, None, "a\x1b[31mb\r"]) == [
        *lines[11:],
        "a [31mb ",
    ]
    long = logtail.bounded(["y" * 1000] * 10)
    assert long == ["y" * 400 + "…"] * 5
    assert sum(len(line.encode()) + 1 for line in long) <= logtail.MAX_BYTES
