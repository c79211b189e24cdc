"""The consumption webhook and the scheduling gate on the real kube-apiserver.

The webhook serves on 127.0.0.1 with a certificate the controller's TLS module provisions (a
Secret, and the caBundle written into the MutatingWebhookConfiguration); the API server calls it
by URL. The configuration selects only this test's namespace, so other tests sharing the
control plane never reach it. There is no scheduler or kubelet here: pods stay Pending.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.protocol import (
    ANNOTATION_DIGESTS,
    ANNOTATION_MODEL,
    ANNOTATION_WAITING,
    LABEL_GATED,
    SCHEDULING_GATE,
)
from controller.config import parse_config
from controller.errors import KubeError
from controller.events import EventRecorder
from controller.gates import GateController, Lift, Wait, decide, informer_lookup
from controller.informer import Informer
from controller.kube import (
    CLUSTER_MODELS,
    EVENTS,
    MODELS,
    PODS,
    KubeClient,
    Resource,
    load_api_client,
)
from controller.podpatch import INIT_CONTAINER
from controller.webhook import PODS_PATH, WORKLOADS_PATH, WebhookServer, start_webhook
from controller.webhook_tls import MUTATING_WEBHOOKS
from tests.ground.controlplane import ControlPlane
from tests.ground.procs import free_port
from tests.integration.chart import render

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", True)
NS = "consume-webhook"
SYSTEM = "ai-models-webhook-system"
CONFIGURATION = "ai-models-webhook-test"
DIGEST = "sha256:" + "ab" * 32
MATCH = (
    "has(object.metadata.annotations) && "
    "('ai.deckhouse.io/model' in object.metadata.annotations || "
    "'ai.deckhouse.io/clustermodel' in object.metadata.annotations)"
)
OLD_MATCH = (
    "oldObject != null && has(oldObject.metadata.annotations) && "
    "('ai.deckhouse.io/model' in oldObject.metadata.annotations || "
    "'ai.deckhouse.io/clustermodel' in oldObject.metadata.annotations)"
)


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def webhook_configuration(port: int) -> dict[str, Any]:
    def webhook(name: str, path: str, rules: list[dict[str, Any]], old: bool) -> dict[str, Any]:
        conditions = [
            {"name": "names-models", "expression": f"({MATCH}) || ({OLD_MATCH})" if old else MATCH}
        ]
        return {
            "name": name,
            "clientConfig": {"url": f"https://127.0.0.1:{port}{path}"},
            "rules": rules,
            "matchConditions": conditions,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
            "reinvocationPolicy": "Never",
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
        }

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION},
        "webhooks": [
            webhook(
                "pods.ai-models.deckhouse.io",
                PODS_PATH,
                [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                old=False,
            ),
            webhook(
                "workloads.ai-models.deckhouse.io",
                WORKLOADS_PATH,
                [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
                        "scope": "Namespaced",
                    },
                    {
                        "apiGroups": ["batch"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["jobs", "cronjobs"],
                        "scope": "Namespaced",
                    },
                ],
                old=True,
            ),
        ],
    }


class Ground:
    def __init__(self, kube: KubeClient, server: WebhookServer, gates: GateController) -> None:
        self.kube = kube
        self.server = server
        self.gates = gates

    def pod(self, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
        }

    def model(self, name: str, status: dict[str, Any] | None) -> None:
        body = {
            "apiVersion": "ai.deckhouse.io/v1alpha1",
            "kind": "Model",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"source": {"url": f"https://huggingface.co/example/{name}"}},
        }
        if self.kube.get(MODELS, name, NS) is None:
            self.kube.create(MODELS, body, NS)
        if status is not None:
            self.kube.merge_patch(MODELS, name, {"status": status}, NS, sub="status")


@pytest.fixture(scope="module")
def ground(crds: ControlPlane) -> Iterator[Ground]:
    crds.kubectl_run(
        "delete", "mutatingwebhookconfiguration", "ai-models-webhook", "--ignore-not-found"
    )  # the chart's, from another module: a Service this ground cannot reach (no kube-proxy)
    kube = KubeClient(load_api_client(str(crds.kubeconfig)))
    for namespace in (NS, SYSTEM):
        if kube.get(NAMESPACES, namespace) is None:
            kube.create(NAMESPACES, {"metadata": {"name": namespace}})
    port = free_port()
    kube.create(MUTATING_WEBHOOKS, webhook_configuration(port))
    config = parse_config(
        {
            "systemNamespace": SYSTEM,
            "webhook": {
                "enabled": True,
                "port": port,
                "bindAddress": "127.0.0.1",
                "configurationName": CONFIGURATION,
                "ipAddresses": ["127.0.0.1"],
                "materialize": {"image": "registry.example/ai-models-worker:0.1.0"},
            },
        }
    )
    stop = threading.Event()
    models = Informer(kube, MODELS, lambda e, o: None, stop=stop)
    cluster_models = Informer(kube, CLUSTER_MODELS, lambda e, o: None, stop=stop)
    lookup = informer_lookup(models, cluster_models)
    gates = GateController(kube, lookup, EventRecorder(kube), stop)
    for informer in (models, cluster_models, gates.pods):
        informer.start()
        assert informer.synced.wait(20)
    server = start_webhook(kube, config, lookup, stop)
    try:
        yield Ground(kube, server, gates)
    finally:
        stop.set()
        kube.delete(MUTATING_WEBHOOKS, CONFIGURATION)
        kube.delete(NAMESPACES, NS)


def _wait_phase(ground: Ground, name: str, phase: str) -> None:
    lookup = ground.gates._lookup
    assert eventually(
        lambda: (lookup("Model", NS, name) or {}).get("status", {}).get("phase") == phase
    )


def test_the_certificate_is_provisioned_and_trusted(ground: Ground) -> None:
    secret = ground.kube.get(
        Resource("", "v1", "secrets", "Secret", True), "ai-models-webhook-tls", SYSTEM
    )
    assert secret is not None
    configuration = ground.kube.get(MUTATING_WEBHOOKS, CONFIGURATION)
    assert configuration is not None
    bundles = {w["clientConfig"]["caBundle"] for w in configuration["webhooks"]}
    assert bundles == {secret["data"]["ca.crt"]}


def test_a_pod_naming_a_ready_model_is_injected_without_a_gate(ground: Ground) -> None:
    ground.model("ready-model", {"phase": "Ready", "artifact": {"kind": "OCI", "digest": DIGEST}})
    _wait_phase(ground, "ready-model", "Ready")
    created = ground.kube.create(
        PODS, ground.pod("consumer-ready", {ANNOTATION_MODEL: " ready-model "}), NS
    )
    spec = created["spec"]
    assert [c["name"] for c in spec["initContainers"]] == [INIT_CONTAINER]
    init = spec["initContainers"][0]
    assert init["image"] == "registry.example/ai-models-worker:0.1.0"
    assert init["command"][:2] == ["ai-models-worker", "materialize-pod"]
    app = spec["containers"][0]
    assert {
        "name": "ai-models-model-ready-model",
        "mountPath": "/models/ready-model",
        "readOnly": True,
    } in app["volumeMounts"]
    assert {"name": "AI_MODELS_DIR", "value": "/models"} in app["env"]
    assert {"name": "AI_MODEL_PATH", "value": "/models/ready-model"} in app["env"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["ai-models-model-ready-model"]["emptyDir"] == {}
    token = volumes["ai-models-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {"audience": "ai-models-delivery", "expirationSeconds": 600, "path": "token"}
    assert "ai-models-digests" in volumes
    annotations = created["metadata"]["annotations"]
    assert json.loads(annotations[ANNOTATION_DIGESTS]) == [
        {"kind": "Model", "name": "ready-model", "digest": DIGEST}
    ]
    assert ANNOTATION_WAITING not in annotations
    assert "schedulingGates" not in spec
    assert LABEL_GATED not in (created["metadata"].get("labels") or {})


def test_a_gated_pod_is_released_when_its_model_turns_ready(ground: Ground) -> None:
    created = ground.kube.create(
        PODS, ground.pod("consumer-late", {ANNOTATION_MODEL: "late-model"}), NS
    )
    assert created["spec"]["schedulingGates"] == [{"name": SCHEDULING_GATE}]
    assert created["metadata"]["labels"][LABEL_GATED] == "true"
    assert (
        created["metadata"]["annotations"][ANNOTATION_WAITING]
        == f"waiting for Model {NS}/late-model: not found"
    )
    assert ANNOTATION_DIGESTS not in created["metadata"]["annotations"]
    key = f"{NS}/consumer-late"
    assert eventually(lambda: ground.gates.pods.get(key))

    ground.model("late-model", {"phase": "Publishing", "progress": "37%"})
    _wait_phase(ground, "late-model", "Publishing")
    assert isinstance(decide(ground.gates.pods.get(key) or {}, ground.gates._lookup, None), Wait)
    assert ground.gates.reconcile(key) == 300.0
    pod = ground.kube.get(PODS, "consumer-late", NS) or {}
    assert (
        pod["metadata"]["annotations"][ANNOTATION_WAITING]
        == f"waiting for Model {NS}/late-model: Publishing (37%)"
    )
    assert pod["spec"]["schedulingGates"] == [{"name": SCHEDULING_GATE}]
    events, _ = ground.kube.list(EVENTS, NS)
    reasons = [
        (e["reason"], e["message"])
        for e in events
        if e["involvedObject"]["name"] == "consumer-late"
    ]
    assert reasons == [("ModelNotReady", f"waiting for Model {NS}/late-model: Publishing (37%)")]

    ground.model("late-model", {"phase": "Ready", "artifact": {"kind": "OCI", "digest": DIGEST}})
    _wait_phase(ground, "late-model", "Ready")
    assert eventually(
        lambda: (
            (ground.gates.pods.get(key) or {})
            .get("metadata", {})
            .get("annotations", {})
            .get(ANNOTATION_WAITING, "")
            .endswith("(37%)")
        )
    )
    assert isinstance(decide(ground.gates.pods.get(key) or {}, ground.gates._lookup, None), Lift)
    assert ground.gates.reconcile(key) is None
    pod = ground.kube.get(PODS, "consumer-late", NS) or {}
    assert "schedulingGates" not in pod["spec"]
    assert json.loads(pod["metadata"]["annotations"][ANNOTATION_DIGESTS]) == [
        {"kind": "Model", "name": "late-model", "digest": DIGEST}
    ]
    assert ANNOTATION_WAITING not in pod["metadata"]["annotations"]
    assert LABEL_GATED not in (pod["metadata"].get("labels") or {})
    # Unlabelled now: the gate controller's cache lets go of it.
    assert eventually(lambda: ground.gates.pods.get(key) is None)


def test_a_deployment_template_carries_the_annotations(ground: Ground) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "server",
            "namespace": NS,
            "annotations": {ANNOTATION_MODEL: "ready-model"},
        },
        "spec": {
            "selector": {"matchLabels": {"app": "server"}},
            "template": {
                "metadata": {"labels": {"app": "server"}},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        },
    }
    created = ground.kube.create(DEPLOYMENTS, deployment, NS)
    template = created["spec"]["template"]
    assert template["metadata"]["annotations"] == {ANNOTATION_MODEL: "ready-model"}
    assert "initContainers" not in template["spec"]  # pods are injected, not templates
    # Dropping the annotation drops it from the template too (the oldObject match condition).
    created["metadata"]["annotations"] = {}
    replaced = ground.kube.replace(DEPLOYMENTS, "server", created, NS)
    assert "annotations" not in replaced["spec"]["template"]["metadata"]


def test_a_bad_annotation_is_refused_with_its_message(ground: Ground) -> None:
    with pytest.raises(KubeError) as refused:
        ground.kube.create(PODS, ground.pod("bad", {ANNOTATION_MODEL: "good,,other"}), NS)
    assert refused.value.message == (
        'admission webhook "pods.ai-models.deckhouse.io" denied the request: '
        "InvalidModelAnnotation: annotation ai.deckhouse.io/model: empty name at position 2 of "
        '"good,,other"; write model names separated by commas'
    )
    pod = ground.pod("mounts-models", {ANNOTATION_MODEL: "ready-model"})
    pod["spec"]["volumes"] = [{"name": "own", "emptyDir": {}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "own", "mountPath": "/models"}]
    with pytest.raises(KubeError) as collided:
        ground.kube.create(PODS, pod, NS)
    assert "ModelVolumeConflict: container 'app' mounts '/models'" in collided.value.message


def test_without_the_webhook_only_annotated_pods_are_refused(ground: Ground) -> None:
    ground.server.shutdown()
    ground.server.server_close()
    plain = ground.kube.create(PODS, ground.pod("plain"), NS)
    assert "initContainers" not in plain["spec"]
    with pytest.raises(KubeError) as refused:
        ground.kube.create(PODS, ground.pod("annotated", {ANNOTATION_MODEL: "ready-model"}), NS)
    assert refused.value.status == 500
    assert 'failed calling webhook "pods.ai-models.deckhouse.io"' in refused.value.message


def test_the_charts_webhook_configuration_is_accepted_by_the_api_server(ground: Ground) -> None:
    rendered = [d for d in render() if d.get("kind") == "MutatingWebhookConfiguration"]
    assert [d["metadata"]["name"] for d in rendered] == ["ai-models-webhook"]
    # Server-side dry run: the API server compiles the matchConditions' CEL and validates all.
    accepted = ground.kube.request(
        "POST", MUTATING_WEBHOOKS.path(), query={"dryRun": "All"}, body=rendered[0]
    )
    assert [w["name"] for w in accepted["webhooks"]] == [
        "pods.ai-models.deckhouse.io",
        "workloads.ai-models.deckhouse.io",
    ]
