"""The Helm chart: lint, render, schema, the configuration it renders, and its manifests on the
real API server (server-side dry run, then applied)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import parse_config
from controller.jobs import JobRequest, build_job
from tests.ground.controlplane import ControlPlane
from tests.integration.chart import CHART, REPO, find, helm, render

PLACEMENT = REPO / "tests" / "data" / "values-placement.yaml"
SYSTEM_NAMESPACE = "d8-ai-models"


def test_helm_lint_strict() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_chart_crds_are_the_generated_ones() -> None:
    for path in sorted((REPO / "crds").glob("*.yaml")):
        assert (CHART / "crds" / path.name).read_text() == path.read_text()


def test_defaults_render_the_in_cluster_registry_and_a_valid_config() -> None:
    docs = render()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Deployment",
        "MutatingWebhookConfiguration", "NetworkPolicy", "PersistentVolumeClaim",
        "PodDisruptionBudget", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    ]  # fmt: skip
    config = parse_config(
        yaml.safe_load(find(docs, "ConfigMap", "ai-models-controller")["data"]["config.yaml"])
    )
    assert config.registry.host == "ai-models-registry.d8-ai-models.svc:5000"
    assert config.registry.insecure is True
    assert config.registry.auth_secret_name == "ai-models-registry-auth"
    assert config.system_namespace == "d8-ai-models"
    # The gateway's Service: the user Secret's URL of an upload session (docs/upload.md).
    assert config.upload.in_cluster_url == "http://ai-models-upload-gateway.d8-ai-models.svc:8444"
    assert (config.upload.external_url, config.upload.size_limit_bytes) == ("", 200 << 30)
    deployment = find(docs, "Deployment", "ai-models-controller")
    assert deployment["spec"]["replicas"] == 2


def test_placement_values_reach_the_job_the_controller_renders() -> None:
    docs = render("d8-ai-models", PLACEMENT)
    assert not [d for d in docs if d["metadata"]["name"] == "ai-models-registry"]
    config = parse_config(
        yaml.safe_load(find(docs, "ConfigMap", "ai-models-controller")["data"]["config.yaml"])
    )
    values = yaml.safe_load(PLACEMENT.read_text())["worker"]
    request = JobRequest(
        "prepare-u", "d8-ai-models", "Model", "u", "ns", "m", "", "https://hf.co/a/b", "r/x:u"
    )
    pod = build_job(request, config)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == values["priorityClassName"]
    assert pod["containers"][0]["resources"] == values["resources"]
    assert pod["containers"][0]["image"] == "registry.example.com/ai-models/worker:0.1.0"
    workspace = next(v for v in pod["volumes"] if v["name"] == "workspace")
    assert workspace["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "fast-nvme"
    assert config.registry.host == "registry.example.com"
    assert config.registry.insecure is False
    assert config.registry.auth_secret_name == "registry-push"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "worker.nodeSelector=gpu",
            "worker.nodeSelector: Invalid type. Expected: object, given: string",
        ),
        ("worker.maxConcurrent=0", "worker.maxConcurrent: Must be greater than or equal to 1"),
        ("worker.nodeSelectr.x=y", "Additional property nodeSelectr is not allowed"),
        (
            "controller.logFormat=xml",
            "controller.logFormat: controller.logFormat must be one of the following",
        ),
        ("upload.externalURL=uploads.example.com", "upload.externalURL: Does not match pattern"),
    ],
)
def test_schema_rejects_wrong_values_with_a_clear_message(setting: str, message: str) -> None:
    result = helm("template", "ai-models", str(CHART), "--set", setting)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_rendered_manifests_pass_server_dry_run_then_apply(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    namespace = SYSTEM_NAMESPACE
    # d8-system: catalog.secretsNamespace, where the chart renders a Role it does not own the
    # namespace of; every namespaced object names its namespace, so no `-n` below.
    for name in (namespace, "d8-system"):
        control_plane.kubectl_run("create", "namespace", name)
    manifests = tmp_path / "chart.yaml"
    rendered = helm(
        "template", "ai-models", str(CHART), "-n", namespace, "--include-crds", "-f", str(PLACEMENT)
    )
    assert rendered.returncode == 0, rendered.stderr
    manifests.write_text(rendered.stdout)
    dry = control_plane.kubectl_run(
        "apply", "--server-side", "--dry-run=server", "-f", str(manifests)
    )
    assert dry.returncode == 0, dry.stderr
    assert "serverside-applied (server dry run)" in dry.stdout
    applied = control_plane.kubectl_run(
        "apply", "--server-side", "--force-conflicts", "-f", str(manifests)
    )
    assert applied.returncode == 0, applied.stderr
    got = control_plane.kubectl_run(
        "get", "deployment,serviceaccount,role", "-n", namespace, "-o", "name"
    )
    assert sorted(got.stdout.split()) == [
        "deployment.apps/ai-models-controller",
        "deployment.apps/ai-models-upload-gateway",
        "role.rbac.authorization.k8s.io/ai-models-controller",
        "role.rbac.authorization.k8s.io/ai-models-upload-gateway",
        "role.rbac.authorization.k8s.io/ai-models-worker",
        "serviceaccount/ai-models-controller",
        "serviceaccount/ai-models-delivery",
        "serviceaccount/ai-models-upload-gateway",
        "serviceaccount/ai-models-worker",
        "serviceaccount/default",
    ]


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = REPO / ".venv" / "bin" / "hadolint"
    for name in ("Dockerfile.worker", "Dockerfile.controller"):
        result = subprocess.run([str(hadolint), str(REPO / name)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_json_schema_is_valid_json() -> None:
    json.loads((CHART / "values.schema.json").read_text())


def secret_rules(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    rules = find(docs, kind, name)["rules"]
    return [r for r in rules if "secrets" in r["resources"]]


def test_controller_reads_auth_secrets_cluster_wide_or_where_listed() -> None:
    cluster = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    # Upload session Secrets (docs/upload.md), narrowed by a policy; never a read.
    uploads = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}
    docs = render()
    assert secret_rules(docs, "ClusterRole", "ai-models-controller") == [uploads, cluster]
    assert not [d for d in docs if d["metadata"]["name"] == "ai-models-controller-auth-secrets"]
    docs = render(sets=("controller.authSecretNamespaces={team-a,team-b}",))
    assert secret_rules(docs, "ClusterRole", "ai-models-controller") == [uploads]
    roles = [d for d in docs if d["metadata"]["name"] == "ai-models-controller-auth-secrets"]
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in roles) == [
        ("Role", "team-a"), ("Role", "team-b"),
        ("RoleBinding", "team-a"), ("RoleBinding", "team-b"),
    ]  # fmt: skip
    for role in (d for d in roles if d["kind"] == "Role"):
        assert role["rules"] == [cluster]
    for binding in (d for d in roles if d["kind"] == "RoleBinding"):
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "ai-models-controller",
                "namespace": SYSTEM_NAMESPACE,
            }
        ]


@pytest.mark.parametrize(
    ("sets", "namespace", "interval"),
    [
        ((), "d8-system", "10m"),
        (("catalog.secretsNamespace=infra", "catalog.defaultRefreshInterval=1h"), "infra", "1h"),
    ],
)
def test_catalog_secrets_are_read_in_the_secrets_namespace_only(
    sets: tuple[str, ...], namespace: str, interval: str
) -> None:
    docs = render(sets=sets)
    name = "ai-models-controller-catalog-secrets"
    role, binding = find(docs, "Role", name), find(docs, "RoleBinding", name)
    assert (role["metadata"]["namespace"], binding["metadata"]["namespace"]) == (namespace,) * 2
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ai-models-controller", "namespace": SYSTEM_NAMESPACE}
    ]
    config = yaml.safe_load(find(docs, "ConfigMap", "ai-models-controller")["data"]["config.yaml"])
    assert config["catalog"] == {"secretsNamespace": namespace, "defaultRefreshInterval": interval}
    assert parse_config(config).catalog.default_refresh_interval == interval


def test_auth_secret_policy_renders_for_models_on_create() -> None:
    policy = find(render(), "ValidatingAdmissionPolicy", "ai-models-auth-secret-access")
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["ai.deckhouse.io"],
            "apiVersions": ["*"],
            "operations": ["CREATE"],
            "resources": ["models"],
        }
    ]
    assert policy["spec"]["failurePolicy"] == "Fail"


def test_upload_gateway_renders_with_the_worker_registry_settings() -> None:
    docs = render(sets=("gateway.replicas=3", "gateway.nodeSelector.role=edge"))
    deployment = find(docs, "Deployment", "ai-models-upload-gateway")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert spec["nodeSelector"] == {"role": "edge"}
    assert container["command"] == ["ai-models-upload-gateway"]
    assert container["args"] == [
        "--port=8444",
        "--registry-host=ai-models-registry.d8-ai-models.svc:5000",
        "--registry-insecure",
        "--registry-auth-file=/etc/ai-models-registry-auth/.dockerconfigjson",
    ]
    assert spec["volumes"] == [
        {"name": "registry-auth", "secret": {"secretName": "ai-models-registry-auth"}}
    ]
    # The built-in registry's NetworkPolicy admits the product's pods by this label.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "ai-models"
    role = find(docs, "Role", "ai-models-upload-gateway")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"]}
    ]
    service = find(docs, "Service", "ai-models-upload-gateway")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8444, "gateway")]
    assert find(render(), "Deployment", "ai-models-upload-gateway")["spec"]["replicas"] == 2
