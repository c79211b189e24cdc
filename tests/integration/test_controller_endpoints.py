"""The controller's HTTP endpoints on real sockets: /healthz, /readyz, /metrics."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

from controller.metrics import Metrics, serve_health, serve_metrics
from tests.ground.procs import free_port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_health_and_readiness() -> None:
    ready = threading.Event()
    port = free_port()
    server = serve_health("127.0.0.1", port, ready.is_set)
    try:
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        assert get(f"http://127.0.0.1:{port}/readyz") == (503, "not ready\n")
        ready.set()
        assert get(f"http://127.0.0.1:{port}/readyz") == (200, "ok\n")
        assert get(f"http://127.0.0.1:{port}/other")[0] == 404
    finally:
        server.shutdown()


def test_metrics_exposes_reconciles_queue_slots_phases_and_requests() -> None:
    metrics = Metrics()
    metrics.add_gauges(
        lambda: 7, lambda: 2, lambda: {("Model", "Ready"): 3, ("ClusterModel", "Pending"): 1}
    )
    metrics.reconciles.labels("Model", "ok").inc(5)
    metrics.duration.labels("Model").observe(0.25)
    metrics.published_bytes.inc(1024)
    metrics.count_request("PUT")
    port = free_port()
    serve_metrics(metrics, "127.0.0.1", port)
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    for line in (
        'ai_models_reconcile_total{kind="Model",result="ok"} 5.0',
        'ai_models_reconcile_duration_seconds_count{kind="Model"} 1.0',
        "ai_models_queue_depth 7.0",
        "ai_models_running_preparations 2.0",
        'ai_models_objects{kind="Model",phase="Ready"} 3.0',
        'ai_models_objects{kind="ClusterModel",phase="Pending"} 1.0',
        "ai_models_published_bytes_total 1024.0",
        'ai_models_kube_requests_total{method="PUT"} 1.0',
    ):
        assert line in text.splitlines(), line
