"""Building blocks shared by the three resources: the base model, object metadata, conditions.

Python attributes are snake_case; the wire names (and the CRD field names) are camelCase, set by
the alias generator. Every model is closed (``extra="forbid"``): the CRD schemas are closed too,
so an unknown key is a drift, never a silently ignored value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

GROUP = "ai.deckhouse.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)

DnsSubdomainName = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
]


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, closed, validated on assignment."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict the API server expects (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


ConditionStatus = Literal["True", "False", "Unknown"]


def _drop_required(schema: dict[str, Any]) -> None:
    # The API reference marks no condition field as required; the CRD follows it. In Python the
    # controller always writes type and status, so the model keeps them required.
    schema.pop("required", None)


class Condition(ApiModel):
    model_config = ConfigDict(json_schema_extra=_drop_required)

    type: Annotated[
        str,
        Field(
            max_length=316,
            pattern=CONDITION_TYPE_PATTERN,
            description="type of condition in CamelCase or in foo.example.com/CamelCase.",
        ),
    ]
    status: Annotated[
        ConditionStatus,
        Field(description="status of the condition, one of True, False, Unknown."),
    ]
    observed_generation: Annotated[
        int | None,
        Field(
            ge=0,
            description=(
                "observedGeneration represents the .metadata.generation that the condition was "
                "set based upon. For instance, if .metadata.generation is currently 12, but the "
                ".status.conditions[x].observedGeneration is 9, the condition is out of date with "
                "respect to the current state of the instance."
            ),
        ),
    ] = None
    last_transition_time: Annotated[
        datetime | None,
        Field(
            description=(
                "lastTransitionTime is the last time the condition transitioned from one status "
                "to another. This should be when the underlying condition changed. If that is "
                "not known, then using the time when the API field changed is acceptable."
            ),
        ),
    ] = None
    reason: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=1024,
            pattern=CONDITION_REASON_PATTERN,
            description=(
                "reason contains a programmatic identifier indicating the reason for the "
                "condition's last transition. Producers of specific condition types may define "
                "expected values and meanings for this field, and whether the values are "
                "considered a guaranteed API. The value should be a CamelCase string. This field "
                "may not be empty."
            ),
        ),
    ] = None
    message: Annotated[
        str | None,
        Field(
            max_length=32768,
            description=(
                "message is a human readable message indicating details about the transition. "
                "This may be an empty string."
            ),
        ),
    ] = None


class ObjectMeta(BaseModel):
    """The part of Kubernetes object metadata the project reads; the rest is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    deletion_timestamp: datetime | None = None


M = TypeVar("M", bound=BaseModel)


def first_problem(error: ValidationError, top: str) -> tuple[str, ErrorDetails]:
    """Where pydantic's first problem is (the dotted field path; ``top`` for the document
    itself) and its details (``msg``, ``type``)."""
    first = error.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or top, first


def parse_bounded(
    model: type[M],
    text: str | bytes,
    *,
    limit: int,
    what: str,
    invalid: type[ValueError],
    top: str,
    detail: Literal["msg", "type"] = "msg",
) -> M:
    """An untrusted JSON document as ``model``, its length checked before it is decoded;
    ``invalid`` naming ``what`` and where it is wrong otherwise. ``detail="type"`` for a document
    with secrets: pydantic's ``msg`` may quote the input, its ``type`` never does."""
    if len(text) > limit:
        raise invalid(f"{what} is {len(text)} bytes, over {limit}")
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        where, first = first_problem(error, top)
        raise invalid(f"{what} is malformed at {where}: {first[detail]}") from None
