"""The chart's built-in registry (the default when ``registry.host`` is empty): it requires
credentials (htpasswd generated at install and kept across upgrades), the controller and the
worker get them exactly as an external registry's ``authSecretName``, and a NetworkPolicy admits
only the product's pods. The rendered configuration is run by the real Debian registry."""

from __future__ import annotations

import base64
import json
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from controller.config import parse_config
from controller.jobs import JobRequest, build_job
from controller.registry import RegistryAccess, RegistryCleaner, credentials_from_docker_config
from tests.ground.controlplane import ControlPlane
from tests.ground.procs import Process, free_port
from tests.integration.chart import CHART, find, helm, render

HOST = "ai-models-registry.d8-ai-models.svc:5000"
JSON = dict[str, Any]
REQUEST = JobRequest(
    "prepare-u", "d8-ai-models", "Model", "u", "ns", "m", "", "https://hf.co/a/b", "r/x:u"
)


def credentials(docs: list[JSON]) -> tuple[str, str, str]:
    """``(username, password, htpasswd line)`` of a rendered chart."""
    auth = find(docs, "Secret", "ai-models-registry-auth")
    config = json.loads(base64.b64decode(auth["data"][".dockerconfigjson"]))
    entry = config["auths"][HOST]
    line = find(docs, "Secret", "ai-models-registry-htpasswd")["data"]["htpasswd"]
    return entry["username"], entry["password"], base64.b64decode(line).decode()


def test_credentials_are_generated_and_wired_like_an_external_registry() -> None:
    docs = render()
    auth = find(docs, "Secret", "ai-models-registry-auth")
    assert auth["type"] == "kubernetes.io/dockerconfigjson"
    username, password, line = credentials(docs)
    assert username == "ai-models"
    assert re.fullmatch(r"[A-Za-z0-9]{40}", password)
    docker_config = json.loads(base64.b64decode(auth["data"][".dockerconfigjson"]))
    encoded = base64.b64encode(f"ai-models:{password}".encode()).decode()
    assert docker_config == {
        "auths": {HOST: {"username": "ai-models", "password": password, "auth": encoded}}
    }
    user, _, hashed = line.partition(":")
    assert user == "ai-models"
    assert hashed.startswith("$2a$10$")
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    # The controller reads the Secret as it reads an operator's; the worker Job mounts it.
    config = parse_config(
        yaml.safe_load(find(docs, "ConfigMap", "ai-models-controller")["data"]["config.yaml"])
    )
    assert config.registry.auth_secret_name == "ai-models-registry-auth"
    raw = base64.b64decode(auth["data"][".dockerconfigjson"])
    assert credentials_from_docker_config(raw, config.registry.host) == ("ai-models", password)
    pod = build_job(REQUEST, config)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "registry-auth")
    assert volume["secret"]["secretName"] == "ai-models-registry-auth"
    # A second render without a cluster (no `lookup`) generates other credentials: nothing is
    # fixed in the chart.
    assert credentials(render())[1] != password


def test_the_registry_runs_the_rendered_config_with_the_htpasswd_mounted() -> None:
    docs = render()
    config = yaml.safe_load(find(docs, "ConfigMap", "ai-models-registry")["data"]["config.yml"])
    assert config == {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": "/var/lib/registry"},
            "delete": {"enabled": True},
        },
        "http": {"addr": ":5000"},
        "auth": {
            "htpasswd": {"realm": "ai-models-registry", "path": "/etc/ai-models-registry/htpasswd"}
        },
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    pod = find(docs, "Deployment", "ai-models-registry")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["serve", "/etc/docker/registry/config.yml"]
    assert "env" not in container  # the file is the whole configuration
    assert container["readinessProbe"] == {"tcpSocket": {"port": "http"}}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {
        "data": "/var/lib/registry",
        "config": "/etc/docker/registry",
        "htpasswd": "/etc/ai-models-registry",
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"] == {"name": "ai-models-registry"}
    assert volumes["htpasswd"]["secret"] == {
        "secretName": "ai-models-registry-htpasswd",
        "items": [{"key": "htpasswd", "path": "htpasswd"}],
        "defaultMode": 0o440,
    }


def test_network_policy_admits_only_the_products_pods() -> None:
    docs = render()
    policy = find(docs, "NetworkPolicy", "ai-models-registry")
    assert policy["metadata"]["namespace"] == "d8-ai-models"
    assert policy["spec"] == {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "ai-models-registry",
                "app.kubernetes.io/instance": "ai-models",
            }
        },
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "ai-models"}}}
                ],
                "ports": [{"protocol": "TCP", "port": 5000}],
            }
        ],
    }
    admitted = {"app.kubernetes.io/part-of": "ai-models"}.items()
    controller = find(docs, "Deployment", "ai-models-controller")["spec"]["template"]
    assert admitted <= controller["metadata"]["labels"].items()
    config = parse_config(
        yaml.safe_load(find(docs, "ConfigMap", "ai-models-controller")["data"]["config.yaml"])
    )
    worker = build_job(REQUEST, config)["spec"]["template"]
    assert admitted <= worker["metadata"]["labels"].items()


def test_an_external_registry_gets_none_of_it() -> None:
    docs = render(sets=("registry.host=registry.example.com",))
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not {n for n in names if n[1].startswith("ai-models-registry")}
    config = parse_config(
        yaml.safe_load(find(docs, "ConfigMap", "ai-models-controller")["data"]["config.yaml"])
    )
    assert config.registry.auth_secret_name is None


def status_of(url: str, method: str = "GET", auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url, method=method)
    request.add_header("Accept", "application/vnd.oci.image.manifest.v1+json")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_the_rendered_config_makes_the_real_registry_require_credentials(tmp_path: Path) -> None:
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed: `make test` installs it with apt-get"
    docs = render()
    username, password, line = credentials(docs)
    config = yaml.safe_load(find(docs, "ConfigMap", "ai-models-registry")["data"]["config.yml"])
    # Only what is a place on this machine changes; auth, deletes and the rest are as rendered.
    port = free_port()
    (tmp_path / "htpasswd").write_text(line + "\n")
    config["storage"]["filesystem"]["rootdirectory"] = str(tmp_path / "storage")
    config["http"]["addr"] = f"127.0.0.1:{port}"
    config["auth"]["htpasswd"]["path"] = str(tmp_path / "htpasswd")
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    process = Process(
        "chart-registry",
        [binary, "serve", str(tmp_path / "config.yml")],
        tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        process.wait_ready(lambda: status_of(f"{base}/v2/") == 401, timeout=30)
        manifest = f"{base}/v2/ai-models/model/team-a/m/manifests/latest"
        assert status_of(manifest) == 401  # anonymous pull
        assert status_of(manifest, "DELETE") == 401  # anonymous delete
        assert status_of(manifest, auth=(username, "wrong")) == 401
        assert status_of(f"{base}/v2/", auth=(username, password)) == 200
        assert status_of(manifest, auth=(username, password)) == 404  # in, and no such tag
        # The controller's client with the credentials of the rendered docker config Secret.
        access = RegistryAccess(f"127.0.0.1:{port}", True, None, username, password)
        assert RegistryCleaner(access).resolve("ai-models/model/team-a/m", "latest") is None
    finally:
        process.stop()


def release_secrets(plane: ControlPlane, namespace: str) -> dict[str, JSON]:
    got = plane.kubectl_run(
        "get", "secret", "ai-models-registry-auth", "ai-models-registry-htpasswd",
        "-n", namespace, "-o", "json",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    return {i["metadata"]["name"]: i["data"] for i in json.loads(got.stdout)["items"]}


@pytest.mark.integration
def test_credentials_survive_helm_upgrade(control_plane: ControlPlane) -> None:
    namespace = "ai-models-upgrade"
    where = ("-n", namespace, "--kubeconfig", str(control_plane.kubeconfig))
    # Other tests apply the chart's cluster-wide objects with kubectl: take them over.
    installed = helm(
        "install", "ai-models", str(CHART), *where, "--create-namespace", "--take-ownership"
    )
    try:
        assert installed.returncode == 0, installed.stderr
        first = release_secrets(control_plane, namespace)
        for _ in range(2):
            upgraded = helm(
                "upgrade", "ai-models", str(CHART), *where, "--set", "worker.backoffLimit=4"
            )
            assert upgraded.returncode == 0, upgraded.stderr
            assert release_secrets(control_plane, namespace) == first
        auth = json.loads(base64.b64decode(first["ai-models-registry-auth"][".dockerconfigjson"]))
        entry = auth["auths"][f"ai-models-registry.{namespace}.svc:5000"]
        line = base64.b64decode(first["ai-models-registry-htpasswd"]["htpasswd"]).decode()
        assert bcrypt.checkpw(entry["password"].encode(), line.partition(":")[2].encode())
    finally:
        helm("uninstall", "ai-models", *where)
