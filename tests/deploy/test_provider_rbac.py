"""The shipped RBAC covers every registered traffic-router provider's rules (static, no cluster).

Each provider plugin declares the RBAC its router needs (`activities.router.Provider.rbac`); the
ClusterRole, the namespaced Role and the chart must grant all of it, so registering a provider
without its RBAC entry fails here rather than as a 403 in a user's first rollout.
(tests/deploy/test_rbac.py checks the other direction on the real control plane: no rule the
rollouts do not use.)
"""

from __future__ import annotations

import pytest
import yaml

from activities.router import PROVIDERS
from tests.deploy._support import MANIFESTS, normalized_rules

ROLES = {
    "ClusterRole": MANIFESTS / "cluster" / "clusterrole.yaml",
    "namespaced Role": MANIFESTS / "namespaced" / "role.yaml",
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("role", sorted(ROLES))
def test_the_role_grants_what_each_provider_needs(role: str, provider: str) -> None:
    granted = normalized_rules(yaml.safe_load(ROLES[role].read_text()))
    needed = set().union(*(rule.permissions() for rule in PROVIDERS[provider].rbac))
    missing = needed - granted
    assert not missing, f"the {role} lacks what provider {provider} needs: {sorted(missing)}"
