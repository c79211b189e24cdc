"""A pip-installed controller renders the preparation Job: the wheel carries its template.

The wheel is built offline from a copy of the sources (a build writes ``build/`` beside them) with
the development venv's setuptools, and installed with ``--no-deps`` into a directory of its own.
A child interpreter without site processing (so without the editable install's finder, and
without the checkout on its path) imports the controller from there and its dependencies from
the development venv, and renders the defaults Job: it must be the golden file that
tests/unit/controller/test_jobs.py renders from the checkout.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.unit.controller.test_jobs import GOLDEN, request
from tests.unit.test_packaging import REPO, pyproject

RENDER = """
import json, sys
import yaml
import controller.jobs
from controller.config import Config
from controller.jobs import JobRequest, build_job

assert controller.jobs.__file__.startswith(sys.argv[1]), controller.jobs.__file__
fields = json.loads(sys.argv[2])
fields["mount_from"] = tuple(fields["mount_from"])
job = build_job(JobRequest(**fields), Config())
print(yaml.safe_dump(job, sort_keys=False), end="")
"""


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def source_copy(destination: Path) -> Path:
    """pyproject.toml, the README it names, and the directories of its packages."""
    setuptools = pyproject()["tool"]["setuptools"]
    directories = {name.partition(".")[0] for name in setuptools["packages"]}
    directories |= set(setuptools["package-dir"].values())
    for name in directories:
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / name, destination / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    return destination


def test_the_installed_wheel_renders_the_job(tmp_path: Path) -> None:
    source = source_copy(tmp_path / "src")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = ["--no-index", "--no-deps", "--no-build-isolation"]
    run([*pip, "wheel", *offline, "-w", str(tmp_path / "dist"), str(source)], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("ai_models-*.whl")
    target = tmp_path / "site"
    run([*pip, "install", *offline, "--target", str(target), str(wheel)], tmp_path)
    assert (target / "controller" / "templates" / "preparation-job.yaml.j2").is_file()

    fields = json.dumps(dataclasses.asdict(request()))
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_path('purelib')}", "PATH": "/usr/bin:/bin"}
    rendered = run([sys.executable, "-S", "-c", RENDER, str(target), fields], tmp_path, env)
    assert rendered == (GOLDEN / "job-model-defaults.yaml").read_text()
