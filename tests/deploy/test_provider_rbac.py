"""The shipped RBAC covers every registered traffic-router provider's rules (static, no cluster).

Each provider plugin declares the RBAC its router needs (`activities.router.Provider.rbac`); the
ClusterRole, the namespaced Role and the chart must grant all of it, so registering a provider
without its RBAC entry fails here rather than as a 403 in a user's first rollout.
(tests/deploy/test_rbac.py checks the other direction on the real control plane: no rule the
rollouts do not use.)

On the local cluster, the real API server confirms it (``kubectl auth can-i``, which asks it for a
SubjectAccessReview): the worker's ServiceAccount, bound to the shipped ClusterRole, may do what
every provider's router needs on the kinds it manages; a ServiceAccount bound to the namespaced
Role may do it in that namespace and nowhere else.
"""

from __future__ import annotations

import pytest
import yaml

from activities.router import PROVIDERS
from tests.conftest import WORKER_USER, Kubectl
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


# --- on the local cluster: the real authorizer, asked with `kubectl auth can-i` ------------------


def can_i(
    kubectl: Kubectl, user: str, verb: str, group: str, resource: str, namespace: str
) -> bool:
    """``kubectl auth can-i`` as ``user`` (the admin impersonates it): the API server's own
    SubjectAccessReview against the RBAC the cluster holds."""
    target = f"{resource}.{group}" if group else resource
    out = kubectl.run("auth", "can-i", verb, target, "-n", namespace, "--as", user, check=False)
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), out.stderr
    return answer == "yes"


def needed(provider: str) -> list[tuple[str, str, str]]:
    """(group, resource, verb) the provider's router needs, and every kind it manages readable."""
    plugin = PROVIDERS[provider]
    triples = {p for rule in plugin.rbac for p in rule.permissions()}
    for kind in plugin.kinds:
        resource, _, group = kind.partition(".")
        triples.add((group, resource, "get"))
    return sorted(triples)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_the_local_cluster_lets_the_worker_do_what_each_provider_needs(
    kubectl: Kubectl, sandbox_namespace: str, provider: str
) -> None:
    # The sandbox binds the `coalmine` ServiceAccount to deploy/manifests/cluster's ClusterRole.
    for group, resource, verb in needed(provider):
        assert can_i(kubectl, WORKER_USER, verb, group, resource, sandbox_namespace), (
            f"{WORKER_USER} may not {verb} {resource}.{group} ({provider})"
        )
    # And no more than the rules say: nothing the routers never do (they never delete here).
    for group, resource, _ in needed(provider):
        assert not can_i(kubectl, WORKER_USER, "deletecollection", group, resource, "default")


def test_the_namespaced_role_grants_every_provider_in_its_namespace_only(
    kubectl: Kubectl, sandbox_namespace: str
) -> None:
    ns, account = sandbox_namespace, "coalmine-namespaced"
    role = yaml.safe_load(ROLES["namespaced Role"].read_text())
    role["metadata"]["namespace"] = ns
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "coalmine", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "coalmine"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
    }
    kubectl.apply(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": account, "namespace": ns},
                },
                role,
                binding,
            ]
        )
    )
    user = f"system:serviceaccount:{ns}:{account}"
    for provider in sorted(PROVIDERS):
        for group, resource, verb in needed(provider):
            assert can_i(kubectl, user, verb, group, resource, ns), (provider, resource, verb)
            assert not can_i(kubectl, user, verb, group, resource, "default"), (provider, resource)
