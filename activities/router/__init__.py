"""Traffic routers: the `TrafficRouter` seam, one plugin module per provider, the registry.

Public surface: `TrafficRouter` (the Protocol), `Provider` (what a plugin exports),
`provider_for` (name → plugin; an unknown name is a `ConfigurationError`), `router_for` (name →
router factory), the routers, and `RouterActivities`.
"""

from activities.router.activities import RouterActivities
from activities.router.base import Provider, RbacRule, RouterFactory, TrafficRouter
from activities.router.gatewayapi import GatewayApiRouter
from activities.router.istio import IstioRouter
from activities.router.kubernetes import KubernetesRouter
from activities.router.registry import PROVIDERS, provider_for, resolve


def router_for(provider: str) -> RouterFactory:
    """The factory of the router for ``provider``; `ConfigurationError` for an unknown name."""
    return provider_for(provider).router


__all__ = [
    "PROVIDERS",
    "GatewayApiRouter",
    "IstioRouter",
    "KubernetesRouter",
    "Provider",
    "RbacRule",
    "RouterActivities",
    "TrafficRouter",
    "provider_for",
    "resolve",
    "router_for",
]
