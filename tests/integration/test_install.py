"""What a newcomer and an image build run: `make demo` on a clean clone, and the install steps of
the Dockerfiles in a fresh virtual environment (no Docker engine runs here; the lint is in
test_chart.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_dockerfile_install_steps_work_in_a_fresh_venv(tmp_path: Path) -> None:
    worker_paths = copied_paths(REPO / "Dockerfile.worker")
    controller_paths = copied_paths(REPO / "Dockerfile.controller")
    assert worker_paths == [
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "api",
        "controller",
        "worker",
    ]
    assert set(worker_paths) <= set(controller_paths)
    source = tmp_path / "src"
    source.mkdir()
    for path in worker_paths:
        origin = REPO / path
        if origin.is_dir():
            shutil.copytree(origin, source / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / path)
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    installed = run(
        [str(venv / "bin" / "pip"), "install", "-q", "-c", "constraints.txt", "."], source
    )
    assert installed.returncode == 0, installed.stderr
    for command in ("ai-models-worker", "ai-models-controller"):
        helped = run([str(venv / "bin" / command), "--help"], tmp_path)
        assert helped.returncode == 0, helped.stderr
        assert f"usage: {command}" in helped.stdout
    # The image runs from site-packages, not from a checkout: every module imports there, and
    # the controller finds the Job template where the image puts it.
    probe = (
        "import pkgutil, importlib, api, controller, worker\n"
        "for pkg in (api, controller, worker):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "from controller.jobs import TEMPLATES; print(TEMPLATES)\n"
    )
    env_templates = str(REPO / "templates")
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "AI_MODELS_TEMPLATES": env_templates},
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == env_templates
    site = run(
        [str(venv / "bin" / "python"), "-c", "import worker; print(worker.__file__)"], tmp_path
    )
    assert "site-packages" in site.stdout
