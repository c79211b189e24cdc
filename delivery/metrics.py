"""Prometheus metrics of the delivery endpoint (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DeliveryMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry_bytes = Counter(
            "ai_models_delivery_registry_bytes",
            "Blob bytes fetched from the registry.",
            registry=self.registry,
        )
        self.served_bytes = Counter(
            "ai_models_delivery_served_bytes",
            "Blob and manifest bytes sent to clients.",
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "ai_models_delivery_cache_hits",
            "Blob requests served from disk.",
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "ai_models_delivery_cache_misses",
            "Blob requests that fetched from the registry.",
            registry=self.registry,
        )
        self.evictions = Counter(
            "ai_models_delivery_evictions",
            "Blobs evicted to stay within the size budget.",
            registry=self.registry,
        )
        self.cache_corrupt = Counter(
            "ai_models_delivery_cache_corrupt",
            "Cached blobs found corrupt on read (deleted, refetched on the next request).",
            registry=self.registry,
        )
        self.requests = Counter(
            "ai_models_delivery_requests",
            "Requests by answer status.",
            ["code"],
            registry=self.registry,
        )
        self.cache_bytes = Gauge(
            "ai_models_delivery_cache_bytes", "Bytes of blobs on disk.", registry=self.registry
        )

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (tests, the benchmark)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0
