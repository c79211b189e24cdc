"""What a newcomer and an image build run: `make demo` on a clean clone, and the install steps of
the Dockerfiles in a fresh virtual environment (no Docker engine runs here; the lint is in
test_chart.py)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_make_demo_on_a_clean_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    cloned = run(["git", "clone", "--quiet", str(REPO), str(clone)], tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    digests = []
    for _ in range(2):
        demo = run(["make", "demo"], clone)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        found = re.search(
            r"^artifact   ./out/all-minilm-l6-v2@(sha256:[0-9a-f]{64})  ", demo.stdout, re.M
        )
        assert found, demo.stdout
        digests.append(found[1])
        assert re.search(r"^architecture\s+BertModel$", demo.stdout, re.M)
        assert re.search(r"^parameterCount\s+22713728$", demo.stdout, re.M)
        assert re.search(r"^supportedEndpointTypes\s+\['Embeddings'\]$", demo.stdout, re.M)
    # The same source packs to the same digest (no wall-clock time inside the artifact).
    assert digests[0] == digests[1]
    layout = clone / "out" / "all-minilm-l6-v2"
    assert (layout / "oci-layout").is_file()
    assert (layout / "blobs" / "sha256" / digests[0].removeprefix("sha256:")).is_file()


def copied_paths(dockerfile: Path) -> list[str]:
    """The repository paths a Dockerfile's build stage COPYs (everything but --from copies)."""
    paths: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            paths += words[1:-1]
    return paths


def pip_install(dockerfile: Path) -> list[str]:
    """The arguments of the Dockerfile's one ``RUN pip install`` (after ``pip``)."""
    runs = [line.split(None, 1)[1] for line in dockerfile.read_text().splitlines()
            if line.startswith("RUN pip install ")]  # fmt: skip
    assert len(runs) == 1, runs
    return shlex.split(runs[0])[1:]


# image → (its commands, the packages that run in it, libraries of the other image it must lack)
IMAGES = {
    "worker": (["ai-models-worker"], ["api", "oci", "worker"], ["jinja2", "prometheus_client"]),
    "controller": (
        ["ai-models-controller", "ai-models-delivery", "ai-models-upload-gateway"],
        ["api", "oci", "controller", "delivery", "gateway"],
        ["httpx2", "zstandard"],
    ),
}

# The image runs from site-packages, not from a checkout: every module of what runs there
# imports with what the image installs, the other image's libraries are absent, and the
# controller finds the Job template inside its package.
PROBE = """
import importlib, importlib.util, pkgutil, sys
packages, absent = sys.argv[1].split(","), sys.argv[2].split(",")
for package in packages:
    root = importlib.import_module(package)
    assert "site-packages" in root.__file__, root.__file__
    for m in pkgutil.walk_packages(root.__path__, package + "."):
        if not m.name.endswith(".__main__"):
            importlib.import_module(m.name)
assert [name for name in absent if importlib.util.find_spec(name)] == []
if "controller" in packages:
    from controller.jobs import JOB_TEMPLATE, TEMPLATES
    assert TEMPLATES.joinpath(JOB_TEMPLATE).is_file()
"""


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_dockerfile_install_steps_work_in_a_fresh_venv(tmp_path: Path, image: str) -> None:
    dockerfile = REPO / f"Dockerfile.{image}"
    commands, packages, absent = IMAGES[image]
    source = tmp_path / "src"
    source.mkdir()
    for path in copied_paths(dockerfile):
        origin = REPO / path
        if origin.is_dir():
            shutil.copytree(origin, source / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / path)
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    installed = run([str(venv / "bin" / "pip"), "-q", *pip_install(dockerfile)], source)
    assert installed.returncode == 0, installed.stderr
    for command in commands:
        helped = run([str(venv / "bin" / command), "--help"], tmp_path)
        assert helped.returncode == 0, helped.stderr
        assert f"usage: {command}" in helped.stdout
    probe = [str(venv / "bin" / "python"), "-c", PROBE, ",".join(packages), ",".join(absent)]
    imported = run(probe, tmp_path)
    assert imported.returncode == 0, imported.stderr
