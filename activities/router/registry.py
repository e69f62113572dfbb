"""The one registry of traffic-router providers: read by the activities, the RBAC test and docs.

Each provider is a plugin module of this package exporting a `Provider` named ``PROVIDER``; this
module lists them. The spec validator cannot import activities, so the names (and what the
validator needs to know of each) are in `workflows.providers`; loading this module checks the
two agree, so they cannot drift apart silently.

Adding a third provider (say ``linkerd``) is one plugin module, its tests and its RBAC entry:

1. ``activities/router/linkerd.py``: a `TrafficRouter` (reconcile, set_routes, get_routes,
   finalize; idempotent, through `activities.kubernetes.resources.Resources`), and
   ``PROVIDER = Provider(name=..., router=..., queries=..., kinds=..., rbac=...)`` — ``queries``
   are Flagger's builtin ``request-success-rate`` / ``request-duration`` for that provider (its
   observer in ``pkg/metrics/observers/factory.go``: Istio's telemetry for ``istio``, the
   application's own HTTP metrics for ``kubernetes`` and ``gatewayapi``);
2. its entry in `_PLUGINS` below, and its name and traits in `workflows.providers.PROVIDERS`
   (what the spec validator refuses for it; the registry refuses to load if the two differ);
3. its RBAC rules in deploy/manifests/cluster/clusterrole.yaml, the namespaced Role and the
   chart's, which tests/deploy/test_provider_rbac.py holds to ``PROVIDER.rbac`` — statically and
   with ``kubectl auth can-i`` on the local cluster;
4. its module in the plugin independence contract in pyproject.toml, and its name in the Helm
   chart's ``meshProvider`` enum (values.schema.json);
5. tests: its rendering (unit), its router against the local cluster (integration), and a
   promote and a rollback through the worker with Flagger's tutorial for it
   (tests/integration/test_providers_e2e.py), which needs the local data plane to honour its
   routing objects (local/sandbox/mesh/) and Prometheus to hold the series its queries read.

Nothing else changes: the activities, the spec validator, the worker's and controller's
``--mesh-provider`` and the docs all read the provider from here (or from
`workflows.providers`), and the Canary's provider travels in every activity input.

Unlike Flagger's factory, nothing falls back to a default provider: an unknown name is a
`ConfigurationError`, raised before any object is touched.
"""

from __future__ import annotations

from activities.errors import ConfigurationError
from activities.router import gatewayapi, istio, kubernetes
from activities.router.base import Provider
from workflows import providers as names

_PLUGINS: tuple[Provider, ...] = (istio.PROVIDER, kubernetes.PROVIDER, gatewayapi.PROVIDER)

PROVIDERS: dict[str, Provider] = {plugin.name: plugin for plugin in _PLUGINS}
"""Provider name → its plugin."""

if set(PROVIDERS) != set(names.PROVIDERS):  # pragma: no cover - a developer's mistake
    raise ImportError(
        f"activities/router providers {sorted(PROVIDERS)} differ from workflows/providers.py's "
        f"{sorted(names.PROVIDERS)}: register a provider in both"
    )


def provider_for(name: str) -> Provider:
    """The plugin for ``name`` (aliases accepted); `ConfigurationError` for an unknown name."""
    canonical = names.canonical(name)
    if canonical is None:
        raise ConfigurationError(
            f"unknown traffic router provider {name!r}: supported providers are {names.known()}"
        )
    return PROVIDERS[canonical]


def resolve(name: str | None, default: str) -> Provider:
    """The Canary's provider when it names one, else the cluster-wide default."""
    return provider_for(name or default)
