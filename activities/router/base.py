"""The `TrafficRouter` seam, and `router_for`: a provider name to its implementation.

As Flagger's ``pkg/router/router.go``, a router does four things: reconcile its objects from the
Canary, set the primary/canary weights, read them back, and finalize (remove what it created).
One module per implementation (`activities.router.istio`); Kubernetes-only (weights by replica
count) and Gateway API are natural next ones.

Unlike Flagger's factory, `router_for` never falls back to a default: an unknown provider name
is a `ConfigurationError`, raised before any object is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kubernetes import client

from activities.errors import ConfigurationError
from workflows.activity_api import CanaryRef, Weights
from workflows.spec import Canary


class TrafficRouter(Protocol):
    """Routes a Canary's traffic between its primary and canary. Every method is idempotent."""

    def reconcile(self, canary: Canary) -> None:
        """Create or converge the routing objects; new routes send everything to the primary,
        existing ones keep their weights."""

    def set_routes(self, ref: CanaryRef, primary: int, canary: int) -> bool:
        """Set the weights; False when they already were (no write)."""

    def get_routes(self, ref: CanaryRef) -> Weights:
        """The current weights."""

    def finalize(self, ref: CanaryRef) -> None:
        """Remove the routing objects Coalmine created."""


RouterFactory = Callable[[client.ApiClient], TrafficRouter]


def _istio(api_client: client.ApiClient) -> TrafficRouter:
    from activities.router.istio import IstioRouter

    return IstioRouter(api_client)


_PROVIDERS: dict[str, RouterFactory] = {"istio": _istio}


def router_for(provider: str) -> RouterFactory:
    """The factory of the router for ``provider``; `ConfigurationError` for an unknown name."""
    try:
        return _PROVIDERS[provider]
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS))
        raise ConfigurationError(
            f"unknown traffic router provider {provider!r}: supported providers are {known}"
        ) from None
