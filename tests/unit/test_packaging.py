"""Each component imports only what pyproject.toml declares for it.

One distribution ships every package; the images differ by the extras they install
(Dockerfile.controller: ``controller``, ``delivery``, ``gateway``; Dockerfile.worker: ``worker``;
a user's machine: ``cli``). The
core dependencies are those of the packages every component uses (``api``, ``oci``). Both checks
below read pyproject.toml, so neither can drift from it:

- statically, every import of a component's modules, and of the first-party modules they reach
  (lazy imports included; grimp, as lint-imports uses it), is of the standard library, a
  first-party package, or a distribution the component declares or one of those depends on;
- at run time, in a child process where every other installed distribution raises
  ``ImportError`` (the image lacks them), every module of the component imports and its entry
  point prints its help.

And the list of packages in pyproject.toml is the package directories of the repository, with
the top-level ``templates/`` shipped as ``controller.templates``.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import grimp
import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Component:
    extras: tuple[str, ...]
    """The extras installed where it runs, besides the core dependencies."""
    packages: tuple[str, ...]
    """The packages whose every module must import with only those."""
    entry_point: str | None
    program: str = ""
    """What its ``--help`` names."""


COMPONENTS = {
    "core": Component((), ("api", "oci"), None),
    "controller": Component(
        ("controller",), ("controller",), "controller.cli", "ai-models-controller"
    ),
    "worker": Component(("worker",), ("worker",), "worker.cli", "ai-models-worker"),
    "delivery": Component(("delivery",), ("delivery",), "delivery.cli", "ai-models-delivery"),
    "gateway": Component(("gateway",), ("gateway",), "gateway.cli", "ai-models-upload-gateway"),
    "cli": Component(("cli",), ("ai_models_cli",), "ai_models_cli.cli", "ai-models"),
    "catalog": Component(("catalog",), ("catalog",), "catalog.cli", "ai-models-catalog-server"),
}


@cache
def pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def first_party() -> set[str]:
    return {name.partition(".")[0] for name in pyproject()["tool"]["setuptools"]["packages"]}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: Iterable[str]) -> set[str]:
    """Distributions required outside any extra (markers evaluated for this interpreter)."""
    names = set()
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.add(_normalized(requirement.name))
    return names


def _with_dependencies(names: set[str]) -> set[str]:
    """``names`` and, recursively, what they require: what pip installs for them."""
    found: set[str] = set()
    pending = set(names)
    while pending:
        name = pending.pop()
        found.add(name)
        pending |= _requirement_names(importlib.metadata.requires(name) or []) - found
    return found


def installed_distributions(component: Component) -> set[str]:
    project = pyproject()["project"]
    declared = _requirement_names(project["dependencies"])
    for extra in component.extras:
        declared |= _requirement_names(project["optional-dependencies"][extra])
    return _with_dependencies(declared)


@cache
def top_level_names() -> dict[str, list[str]]:
    """Every top-level name installed in this environment → the distributions providing it."""
    return dict(importlib.metadata.packages_distributions())


def allowed_imports(component: Component) -> set[str]:
    """Top-level names importable where the component runs, the standard library aside."""
    distributions = installed_distributions(component)
    return first_party() | {
        name
        for name, owners in top_level_names().items()
        if any(_normalized(owner) in distributions for owner in owners)
    }


def test_the_extras_tell_the_components_apart() -> None:
    """The derivation is not vacuous: each side lacks the other's own libraries."""
    worker = allowed_imports(COMPONENTS["worker"])
    controller = allowed_imports(COMPONENTS["controller"])
    assert {"jinja2", "prometheus_client", "cryptography"} & worker == set()
    assert {"httpx2", "zstandard"} & controller == set()
    assert {"structlog", "kubernetes", "pydantic", "requests"} <= worker & controller
    assert {"huggingface_hub", "transformers", "pytest"} & (worker | controller) == set()
    assert {"pydantic", "yaml", "requests"} <= allowed_imports(COMPONENTS["core"])


@cache
def import_graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        *sorted(first_party()),
        include_external_packages=True,
        exclude_type_checking_imports=True,
        cache_dir=None,
    )


def imported_third_party(packages: Iterable[str]) -> set[str]:
    graph = import_graph()
    reached: set[str] = set()
    for package in packages:
        for module in graph.find_descendants(package) | {package}:
            reached |= {module} | graph.find_upstream_modules(module)
    tops = {module.partition(".")[0] for module in reached}
    return tops - first_party() - set(sys.stdlib_module_names)


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_a_component_imports_only_what_it_declares(name: str) -> None:
    component = COMPONENTS[name]
    assert imported_third_party(component.packages) - allowed_imports(component) == set()


CHILD = """
import importlib, importlib.abc, pkgutil, sys

absent = set(sys.argv[1].split(","))


class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in absent:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed)", name=name)
        return None


sys.meta_path.insert(0, Absent())
for package in sys.argv[2].split(","):
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if not module.name.endswith(".__main__"):  # it would run the program
            importlib.import_module(module.name)
if sys.argv[3]:
    importlib.import_module(sys.argv[3]).main(["--help"])
"""


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_a_component_runs_without_the_others_dependencies(name: str) -> None:
    component = COMPONENTS[name]
    absent = ",".join(sorted(set(top_level_names()) - allowed_imports(component)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", CHILD, absent, ",".join(component.packages)]
    done = subprocess.run(
        [*args, component.entry_point or ""],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if component.entry_point is not None:
        assert done.stdout.startswith(f"usage: {component.program} ")


NOT_SHIPPED = {"tests", "templates"}
"""Package directories at the top that are no package of the wheel (``templates`` is shipped as
``controller.templates``)."""


def package_directories() -> set[str]:
    found = set()
    for top in REPO.glob("*/__init__.py"):
        if top.parent.name not in NOT_SHIPPED:
            for init in top.parent.rglob("__init__.py"):
                found.add(".".join(init.parent.relative_to(REPO).parts))
    return found


def test_the_package_list_is_the_package_directories() -> None:
    setuptools = pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"controller.templates": "templates"}
    expected = package_directories() | {"controller.templates"}
    assert sorted(setuptools["packages"]) == sorted(expected)


def test_every_template_is_package_data() -> None:
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["controller.templates"]
    templates = [p.name for p in (REPO / "templates").iterdir() if p.suffix != ".py"]
    assert "preparation-job.yaml.j2" in templates
    assert [t for t in templates if not any(fnmatch.fnmatch(t, p) for p in patterns)] == []


@pytest.mark.parametrize("dockerfile", ["Dockerfile.controller", "Dockerfile.worker"])
def test_each_dockerfile_copies_every_directory_the_distribution_lists(dockerfile: str) -> None:
    # The package list is explicit: a directory left out of an image's build context fails
    # the image's `pip install .` ("package directory … does not exist").
    setuptools = pyproject()["tool"]["setuptools"]
    mapped = setuptools.get("package-dir", {})
    needed = {mapped.get(p, p.replace(".", "/")).split("/")[0] for p in setuptools["packages"]}
    copied = set(re.findall(r"^COPY\s+(\S+)\s+\./", (REPO / dockerfile).read_text(), re.M))
    assert needed - copied == set()
