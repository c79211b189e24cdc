"""The scheduler part of the node emulator: may a pending pod be bound to the emulated node?

Pure functions of the pod and the node's labels and taints. They follow the default scheduler's
filters that decide placement — ``nodeSelector``, required node affinity (``matchExpressions``
with In/NotIn/Exists/DoesNotExist/Gt/Lt and ``matchFields`` on ``metadata.name``), taints and
tolerations, scheduling gates, the scheduler name — and leave out resource fitting, pod
(anti-)affinity and topology spread, which a single emulated node cannot express usefully.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

JSON = dict[str, Any]
DEFAULT_SCHEDULER = "default-scheduler"


def _expression_matches(expression: JSON, values_of: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "")
    values: list[str] = expression.get("values") or []
    present = key in values_of
    value = values_of.get(key, "")
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        try:
            number, bound = int(value), int(values[0])
        except ValueError:
            return False
        return number > bound if operator == "Gt" else number < bound
    return False


def _term_matches(term: JSON, labels: Mapping[str, str], node_name: str) -> bool:
    expressions: list[JSON] = term.get("matchExpressions") or []
    fields: list[JSON] = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term matches no node (k8s.io/component-helpers/scheduling)
    by_field = {"metadata.name": node_name}
    return all(_expression_matches(e, labels) for e in expressions) and all(
        _expression_matches(f, by_field) for f in fields
    )


def _affinity_allows(pod_spec: JSON, labels: Mapping[str, str], node_name: str) -> bool:
    node_affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    terms: list[JSON] = required.get("nodeSelectorTerms") or []
    return any(_term_matches(term, labels, node_name) for term in terms)


def _tolerates(tolerations: Sequence[JSON], taint: JSON) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect", "")
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key", "")
        if toleration.get("operator", "Equal") == "Exists":
            if not key or key == taint.get("key"):
                return True
        elif key == taint.get("key") and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def schedulable(
    pod: JSON, node_name: str, labels: Mapping[str, str], taints: Sequence[JSON] = ()
) -> bool:
    """True when the default scheduler could bind this pod to the node now."""
    spec: JSON = pod.get("spec", {})
    if spec.get("nodeName") or pod["metadata"].get("deletionTimestamp"):
        return False
    if pod.get("status", {}).get("phase", "Pending") != "Pending":
        return False
    if spec.get("schedulerName", DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
        return False
    if spec.get("schedulingGates"):
        return False
    selector: dict[str, str] = spec.get("nodeSelector") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return False
    if not _affinity_allows(spec, labels, node_name):
        return False
    tolerations: list[JSON] = spec.get("tolerations") or []
    return all(
        _tolerates(tolerations, taint)
        for taint in taints
        if taint.get("effect") in ("NoSchedule", "NoExecute")
    )
