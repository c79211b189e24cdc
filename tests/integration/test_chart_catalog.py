"""The chart's catalog server option: off by default, its required values, and what it renders
(the controller image's ``ai-models-catalog-server``, RBAC on exactly the named Secrets, the
label the registry's NetworkPolicy admits)."""

from __future__ import annotations

import pytest

from tests.integration.chart import CHART, find, helm, render

ENABLED = (
    "catalogServer.enabled=true",
    "catalogServer.tlsSecretName=catalog-tls",
    "catalogServer.clientTokenSecretNames={cluster-b,cluster-c}",
    "catalogServer.grantKeySecretName=catalog-grant-key",
    "catalogServer.publicHost=catalog.example.com:443",
)


def test_off_by_default() -> None:
    assert [d for d in render() if "catalog-server" in d["metadata"]["name"]] == []


def test_enabled_renders_the_server_with_its_secrets_and_rbac() -> None:
    docs = render(sets=ENABLED)
    deployment = find(docs, "Deployment", "ai-models-catalog-server")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["ai-models-catalog-server"]
    assert container["args"] == [
        "--config=/etc/ai-models/config.yaml",
        "--port=8445",
        "--tls-cert=/etc/ai-models-catalog-tls/tls.crt",
        "--tls-key=/etc/ai-models-catalog-tls/tls.key",
        "--client-secret=cluster-b",
        "--client-secret=cluster-c",
        "--grant-key-secret=catalog-grant-key",
        "--grant-ttl=600",
        "--selector=ai.deckhouse.io/catalog=publish",
        "--public-host=catalog.example.com:443",
        "--registry-auth-file=/etc/ai-models-registry-auth/.dockerconfigjson",
    ]
    assert {"name": "tls", "secret": {"secretName": "catalog-tls"}} in spec["volumes"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "ai-models"
    assert find(docs, "ClusterRole", "ai-models-catalog-server")["rules"] == [
        {"apiGroups": ["ai.deckhouse.io"], "resources": ["clustermodels"], "verbs": ["list"]}
    ]
    assert find(docs, "Role", "ai-models-catalog-server")["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": ["cluster-b", "cluster-c", "catalog-grant-key"],
        }
    ]
    service = find(docs, "Service", "ai-models-catalog-server")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8445, "catalog")]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("catalogServer.enabled=true",), "catalogServer.tlsSecretName is required"),
        (
            ("catalogServer.enabled=true", "catalogServer.tlsSecretName=t"),
            "clientTokenSecretNames needs at least one Secret",
        ),
        (
            (
                "catalogServer.enabled=true",
                "catalogServer.tlsSecretName=t",
                "catalogServer.clientTokenSecretNames={a}",
            ),
            "grantKeySecretName is required with more than one replica",
        ),
        (("catalogServer.grantTTLSeconds=1",), "grantTTLSeconds"),
    ],
)
def test_missing_values_fail_with_a_clear_message(sets: tuple[str, ...], message: str) -> None:
    args = ["template", "ai-models", str(CHART)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
