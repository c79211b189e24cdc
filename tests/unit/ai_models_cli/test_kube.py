"""The kubeconfig the CLI uses: ``--kubeconfig``, else ``KUBECONFIG``; the context's namespace."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ai_models_cli.errors import UsageError
from ai_models_cli.kube import Cluster


def kubeconfig(path: Path, namespace: str | None) -> Path:
    context: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "here", "context": context},
                    {"name": "other", "context": {"cluster": "c", "user": "u", "namespace": "o"}},
                ],
                "current-context": "here",
            }
        )
    )
    return path


def test_kubeconfig_env_is_honoured_and_the_context_names_the_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", "team-x")))
    assert Cluster.connect().namespace == "team-x"
    assert Cluster.connect(context="other").namespace == "o"


def test_a_context_without_namespace_means_default(tmp_path: Path) -> None:
    assert Cluster.connect(str(kubeconfig(tmp_path / "config", None))).namespace == "default"


def test_an_unusable_kubeconfig_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^no usable kubeconfig: "):
        Cluster.connect(str(tmp_path / "absent"))
