"""``ai-models-delivery``'s options: sizes, and a configuration that cannot work is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ConfigError
from delivery.cli import build_parser, build_server, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("100Gi", 100 << 30), ("512Mi", 512 << 20), ("12Ki", 12 << 10), ("1048576", 1 << 20),
     ("2Ti", 2 << 40)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "10GB", "Gi", "-1Gi", "1.5Gi", "1 Gi"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size such as 100Gi"):
        parse_size(text)


def test_the_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.port, args.cache_size, args.cache_dir, args.review_ttl) == (
        9444, 100 << 30, Path("/var/lib/ai-models/cache"), 30.0,
    )  # fmt: skip


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--cache-dir", str(tmp_path), "--tls-cert", str(tmp_path / "tls.crt"), "--port", "0"]
    )
    with pytest.raises(ConfigError, match=r"^give both --tls-cert and --tls-key, or neither"):
        build_server(args, kube=None)  # type: ignore[arg-type]
