"""The one registry of traffic-router providers: read by the activities, the RBAC test and docs.

Each provider is a plugin module of this package exporting a `Provider` named ``PROVIDER``; this
module lists them. The spec validator cannot import activities, so the names (and what the
validator needs to know of each) are in `workflows.providers`; loading this module checks the
two agree, so they cannot drift apart silently.

Adding a third provider (say ``linkerd``):

1. ``activities/router/linkerd.py``: a `TrafficRouter` (reconcile, set_routes, get_routes,
   finalize; idempotent, through `activities.kubernetes.resources.Resources`), and
   ``PROVIDER = Provider(name=..., router=..., queries=..., kinds=..., rbac=...)``;
2. its entry in `_PLUGINS` below, and its name and traits in `workflows.providers.PROVIDERS`;
3. its RBAC rules in deploy/manifests/cluster/clusterrole.yaml (and the chart's, the namespaced
   Role), which tests/deploy/test_provider_rbac.py holds to ``PROVIDER.rbac``;
4. its module in the plugin independence contract in pyproject.toml;
5. tests: its rendering (unit), its router against the local cluster (integration), and a
   promote and a rollback through the worker.

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
