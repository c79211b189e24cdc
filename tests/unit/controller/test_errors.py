"""The permission a 403 names, read from the API server's own wording (the messages below are
a real kube-apiserver's answers to a service account without the rule)."""

from __future__ import annotations

import pytest

from controller.errors import Forbidden, Permission, kube_error

USER = 'User "system:serviceaccount:d8-ai-models:ai-models-controller"'


@pytest.mark.parametrize(
    ("message", "permission", "text"),
    [
        (
            f'models.ai.deckhouse.io "m" is forbidden: {USER} cannot patch resource '
            '"models/status" in API group "ai.deckhouse.io" in the namespace "team-a"',
            Permission("patch", "models/status", "ai.deckhouse.io", "team-a"),
            "patch models/status (API group ai.deckhouse.io) in namespace team-a",
        ),
        (
            f'configmaps "x" is forbidden: {USER} cannot get resource "configmaps" in API '
            'group "" in the namespace "default"',
            Permission("get", "configmaps", "", "default"),
            "get configmaps (the core API group) in namespace default",
        ),
        (
            f"leases.coordination.k8s.io is forbidden: {USER} cannot list resource "
            '"leases" in API group "coordination.k8s.io" at the cluster scope',
            Permission("list", "leases", "coordination.k8s.io", None),
            "list leases (API group coordination.k8s.io) cluster-wide",
        ),
    ],
)
def test_an_rbac_denial_names_the_missing_rule(
    message: str, permission: Permission, text: str
) -> None:
    error = kube_error(403, "Forbidden", message)
    assert isinstance(error, Forbidden)
    assert error.permission == permission
    assert str(error.permission) == text


def test_a_403_of_another_cause_names_no_rule() -> None:
    message = "unable to create new content in namespace team-a because it is being terminated"
    error = kube_error(403, "Forbidden", message)
    assert isinstance(error, Forbidden)
    assert error.permission is None
