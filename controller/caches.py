"""What a reconcile observes: the informer caches of Models, ClusterModels, worker Jobs and pods,
the upload session records (Secrets of the system namespace, docs/upload.md) and the
ModelCatalogSources (docs/catalog.md; their entries live in ``controller.catalogs``).

``Caches`` is the read-only interface the reconciler, the slot queue, the dispatcher and the
finalizer depend on; ``InformerCaches`` implements it over any ``Store`` (the informers in the
controller, views of an in-memory API server in unit tests). Reads never call the API server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from controller.naming import ObjectKey

JSON = dict[str, Any]


class Store(Protocol):
    """One resource's cache, keyed ``namespace/name`` (``/name`` when cluster-scoped)."""

    def get(self, key: str) -> JSON | None: ...

    def items(self) -> list[JSON]: ...


class Caches(Protocol):
    @property
    def models(self) -> Store: ...

    @property
    def cluster_models(self) -> Store: ...

    @property
    def jobs(self) -> Store: ...

    @property
    def pods(self) -> Store: ...

    @property
    def upload_records(self) -> Store: ...

    @property
    def catalog_sources(self) -> Store:
        """ModelCatalogSources (cluster-scoped: keys ``/name``)."""
        ...

    def object(self, key: ObjectKey) -> JSON | None:
        """The Model or ClusterModel of ``key``; ``None`` when it is gone."""
        ...

    def job(self, namespace: str, name: str) -> JSON | None: ...

    def upload_record(self, namespace: str, name: str) -> JSON | None:
        """The record Secret ``name`` (``api.upload.record_name``)."""
        ...

    def pods_of(self, job_name: str) -> list[JSON]:
        """The pods of one Job (its ``job-name`` label)."""
        ...


S = TypeVar("S", bound=Store)


@dataclass(frozen=True)
class InformerCaches(Generic[S]):
    models: S
    cluster_models: S
    jobs: S
    pods: S
    upload_records: S
    catalog_sources: S

    def object(self, key: ObjectKey) -> JSON | None:
        store = self.models if key.kind == "Model" else self.cluster_models
        return store.get(f"{key.namespace}/{key.name}")

    def job(self, namespace: str, name: str) -> JSON | None:
        return self.jobs.get(f"{namespace}/{name}")

    def upload_record(self, namespace: str, name: str) -> JSON | None:
        return self.upload_records.get(f"{namespace}/{name}")

    def pods_of(self, job_name: str) -> list[JSON]:
        return [
            p
            for p in self.pods.items()
            if (p["metadata"].get("labels") or {}).get("job-name") == job_name
        ]
