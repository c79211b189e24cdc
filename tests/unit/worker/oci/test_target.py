"""DEST: which strings are registries and which are layout directories (the table of
docs/oci.md), the layout's tag, and that nothing is written when DEST is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oci.errors import InvalidReference
from worker.oci.target import (
    MAX_MOUNT_CANDIDATES,
    MOUNT_FROM_ENV,
    LayoutTarget,
    RegistryTarget,
    is_layout_path,
    mount_candidates,
    parse_destination,
    split_layout_tag,
)

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("dest", "layout"),
    [
        ("/abs/out", True),
        ("./out", True),
        ("../out", True),
        (".", True),
        ("..", True),
        ("./dir with space", True),
        ("models/minilm", True),  # a relative path without ./: no host can look like "models"
        ("models/minilm/", True),
        ("Models/MiniLM_v2", True),
        ("out", True),
        ("out:v1", True),
        ("models/minilm:v1", True),
        (f"models/minilm@{DIGEST}", True),  # materialize's REF
        (f"out@{DIGEST}", True),
        (f"r.io/a@{DIGEST}", False),
        ("registry.local/ai/m", False),
        ("127.0.0.1:5000/m", False),
        ("localhost/m", False),
        ("localhost:5000/m:v1", False),
        ("registry:5000/a/b", False),
        ("my.models/minilm", False),  # a dot: a host, as docker reads it (write ./my.models/…)
        ("[::1]:5000/x", False),
        ("http://models/x", False),
        ("https://r.io/x", False),
        ("localhost:5000", False),  # a lone host: refused below, not a directory
        ("registry.local", False),
        ("localhost", False),
        ("not a ref!", False),
    ],
)
def test_which_destinations_are_layout_directories(dest: str, layout: bool) -> None:
    assert is_layout_path(dest) is layout


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("./out", ("./out", None)),
        ("./out:v1", ("./out", "v1")),
        ("/a/b:c/out", ("/a/b:c/out", None)),  # a colon before the last / is part of the path
        ("./a:b:latest", ("./a:b", "latest")),  # the last colon starts the tag
        ("models/minilm:uid-1.2_3", ("models/minilm", "uid-1.2_3")),
    ],
)
def test_the_tag_of_a_layout_follows_the_last_colon(
    dest: str, expected: tuple[str, str | None]
) -> None:
    assert split_layout_tag(dest) == expected


@pytest.mark.parametrize(
    ("dest", "message"),
    [
        ("./out:bad tag", r"^'\./out:bad tag': 'bad tag' is not a valid tag \(a layout"),
        ("./out:", r"^'\./out:': '' is not a valid tag"),
        ("localhost:5000", r"^'localhost:5000': expected host\[:port\]/repository"),
        ("registry.local", r"^'registry\.local': expected host\[:port\]/repository"),
        ("not a ref!", r"^'not a ref!': expected host\[:port\]/repository"),
        ("r.io/a@sha256:" + "0" * 64, "a destination names a tag, not a digest"),
        ("./out@sha256:" + "0" * 64, r"^'\./out@sha256:0+': a destination names a tag, not a"),
        ("out:v1@sha256:" + "0" * 64, "a destination names a tag, not a digest"),
    ],
)
def test_refused_destinations_write_nothing(
    dest: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidReference, match=message):
        parse_destination(dest)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("dest", "directory", "tag"),
    [
        ("models/minilm", "models/minilm", "latest"),
        ("./out:v1", "out", "v1"),
        ("out:v1", "out", "v1"),
        ("./a:b:latest", "a:b", "latest"),
    ],
)
def test_a_layout_destination_is_created_and_tagged(
    dest: str, directory: str, tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = parse_destination(dest)
    assert isinstance(target, LayoutTarget)
    assert target.layout.root.resolve() == tmp_path / directory
    assert target.tag == tag
    assert json.loads((tmp_path / directory / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [directory.split("/")[0]]


def test_a_tag_in_dest_wins_over_the_tag_argument(tmp_path: Path) -> None:
    assert parse_destination(f"{tmp_path}/out:v2", tag="uid-1").tag == "v2"
    assert parse_destination(f"{tmp_path}/out", tag="uid-1").tag == "uid-1"


def test_a_registry_destination_keeps_its_tag() -> None:
    target = parse_destination("http://127.0.0.1:5000/ai/m:v1", tag="other")
    assert isinstance(target, RegistryTarget)
    assert (target.reference.registry, target.reference.repository, target.tag) == (
        "127.0.0.1:5000",
        "ai/m",
        "v1",
    )


def test_an_existing_directory_named_with_a_colon_is_reached_only_with_a_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule does not look at the disk: ``./out:v1`` is ``./out`` tagged ``v1`` even when a
    directory ``out:v1`` exists (an older worker made such directories)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out:v1").mkdir()
    target = parse_destination("./out:v1")
    assert isinstance(target, LayoutTarget)
    assert (target.layout.root, target.tag) == (Path("./out"), "v1")
    assert list((tmp_path / "out:v1").iterdir()) == []
    target = parse_destination("./out:v1:latest")
    assert isinstance(target, LayoutTarget)
    assert (target.layout.root, target.tag) == (Path("./out:v1"), "latest")
    assert (tmp_path / "out:v1" / "oci-layout").is_file()


# ---- mount candidates ($AI_MODELS_MOUNT_FROM) -------------------------------------------------


def test_mount_candidates_keep_valid_other_repositories_in_order() -> None:
    value = " ai/model/a/x , ai/model/b/y,ai/model/a/x,,ai/clustermodel/z"
    assert mount_candidates(value, own="ai/model/b/y") == ("ai/model/a/x", "ai/clustermodel/z")


@pytest.mark.parametrize(
    "bad", ["Upper/case", "repo:tag", "repo@sha256:" + "0" * 64, "a//b", "-x", "x" * 256]
)
def test_a_malformed_mount_candidate_is_skipped(bad: str) -> None:
    assert mount_candidates(f"{bad},ok/repo", own="mine") == ("ok/repo",)


def test_mount_candidates_are_bounded() -> None:
    value = ",".join(f"r/{i}" for i in range(MAX_MOUNT_CANDIDATES + 5))
    assert mount_candidates(value, own="mine") == tuple(
        f"r/{i}" for i in range(MAX_MOUNT_CANDIDATES)
    )


def test_the_destination_reads_mount_candidates_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MOUNT_FROM_ENV, "ai/model/a/x,ai/model/b/y")
    target = parse_destination("registry.local/ai/model/b/y:uid")
    assert isinstance(target, RegistryTarget)
    assert target.mount_from == ("ai/model/a/x",)
    explicit = parse_destination("registry.local/ai/model/b/y:uid", mount_from=())
    assert isinstance(explicit, RegistryTarget)
    assert explicit.mount_from == ()
