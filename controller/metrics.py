"""Prometheus metrics and the health endpoints of the controller.

``/metrics`` on the metrics port: reconcile totals, errors and durations per kind, queue depth,
running preparations, objects by phase, bytes published. ``/healthz`` (the process serves) and
``/readyz`` (the caches are synced) on the health port.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "ai_models_reconcile_total",
            "Reconciles by kind and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "ai_models_reconcile_duration_seconds",
            "Reconcile duration.",
            ["kind"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "ai_models_kube_requests_total",
            "Requests to the Kubernetes API by HTTP method.",
            ["method"],
            registry=self.registry,
        )
        self.published_bytes = Counter(
            "ai_models_published_bytes_total",
            "Bytes of artifacts published (config + layers).",
            registry=self.registry,
        )

    def count_request(self, method: str) -> None:
        self.api_requests.labels(method).inc()

    def add_gauges(
        self,
        queue_depth: Callable[[], int],
        running: Callable[[], int],
        phases: Callable[[], dict[tuple[str, str], int]],
    ) -> None:
        self.registry.register(_Gauges(queue_depth, running, phases))


class _Gauges(Collector):
    def __init__(
        self,
        queue_depth: Callable[[], int],
        running: Callable[[], int],
        phases: Callable[[], dict[tuple[str, str], int]],
    ) -> None:
        self._queue_depth = queue_depth
        self._running = running
        self._phases = phases

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "ai_models_queue_depth", "Keys waiting in the work queue.", value=self._queue_depth()
        )
        yield GaugeMetricFamily(
            "ai_models_running_preparations", "Preparation Jobs running.", value=self._running()
        )
        family = GaugeMetricFamily(
            "ai_models_objects", "Objects by kind and phase.", labels=["kind", "phase"]
        )
        for (kind, phase), count in sorted(self._phases().items()):
            family.add_metric([kind, phase], count)
        yield family


def serve_metrics(metrics: Metrics, address: str, port: int) -> None:
    start_http_server(port, addr=address, registry=metrics.registry)


def serve_health(address: str, port: int, ready: Callable[[], bool]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                ok = True
            elif self.path == "/readyz":
                ok = ready()
            else:
                self.send_error(404)
                return
            body = b"ok\n" if ok else b"not ready\n"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the log

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
