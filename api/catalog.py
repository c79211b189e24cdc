"""ModelCatalogSource: a remote catalog of prepared models (cluster-scoped).

Field for field with the API reference; the status reports catalog health only, never the remote
inventory or secret material.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from api.meta import API_VERSION, ApiModel, Condition, DnsSubdomainName, ObjectMeta

CATALOG_URL_PATTERN = r"^https:\/\/[^:\/?#@]+(:[0-9]+)?(\/[^?#]*)?$"


class ModelCatalogSourceSpec(ApiModel):
    ca_secret_name: Annotated[
        DnsSubdomainName | None,
        Field(description="CASecretName names an optional d8-system Secret with ca.crt."),
    ] = None
    credentials_secret_name: Annotated[
        DnsSubdomainName,
        Field(
            description=(
                "CredentialsSecretName names a d8-system Secret used for the semantic catalog API "
                "and grant exchange. The controller reads this Secret directly and never copies "
                "it into workload namespaces."
            )
        ),
    ]
    refresh_interval: Annotated[
        str | None,
        Field(
            description=(
                "RefreshInterval controls how often the controller refreshes catalog metadata. "
                "The controller uses a safe default when omitted."
            )
        ),
    ] = None
    url: Annotated[
        str,
        Field(
            min_length=9,
            pattern=CATALOG_URL_PATTERN,
            description="URL is the HTTPS base URL of the remote catalog endpoint.",
        ),
    ]


class ModelCatalogSourceStatus(ApiModel):
    catalog_revision: Annotated[
        str | None,
        Field(
            description="CatalogRevision is the last successfully observed remote catalog revision."
        ),
    ] = None
    conditions: list[Condition] | None = None
    entry_count: Annotated[
        int | None,
        Field(
            ge=0,
            description=(
                "EntryCount is the number of active entries in the last successful refresh."
            ),
        ),
    ] = None
    last_successful_refresh_time: Annotated[
        datetime | None,
        Field(
            description=(
                "LastSuccessfulRefreshTime is the time of the last successful catalog refresh."
            )
        ),
    ] = None
    observed_generation: Annotated[
        int | None,
        Field(
            description=(
                "ObservedGeneration is the latest metadata.generation reconciled by the controller."
            )
        ),
    ] = None


class ModelCatalogSource(ApiModel):
    """ModelCatalogSource describes an external ClusterModel catalog."""

    api_version: Literal["ai.deckhouse.io/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["ModelCatalogSource"] = "ModelCatalogSource"
    metadata: ObjectMeta
    spec: Annotated[
        ModelCatalogSourceSpec,
        Field(description="ModelCatalogSourceSpec declares an external ClusterModel catalog."),
    ]
    status: Annotated[
        ModelCatalogSourceStatus | None,
        Field(
            description=(
                "ModelCatalogSourceStatus reports remote catalog health without embedding the "
                "remote inventory or secret material."
            )
        ),
    ] = None
