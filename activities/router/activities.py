"""The traffic-router activities: reconcile the routes, set and read the weights.

Synchronous (the Kubernetes client is) and idempotent: each delegates to a `TrafficRouter`,
whose methods read first and write only what differs — `set_weights` at the weights already
set makes no write, so a retry or replay after a crash does no harm.

The router is chosen by name with `router_for`: `reconcile_routes` by the Canary's
``spec.provider``; `set_weights` and `get_weights` (whose inputs carry only a `CanaryRef`) by the
provider the worker was configured with.
"""

from __future__ import annotations

from kubernetes import client
from temporalio import activity

from activities.router.base import TrafficRouter, router_for
from workflows.activity_api import ActivityName, CanaryRef, RoutesInput, SetWeightsInput, Weights


class RouterActivities:
    """Activities on the traffic router.

    ``api_client``: the Kubernetes client. ``provider``: the router for `set_weights` and
    `get_weights`; an unknown name fails here, at worker start-up, not mid-rollout.
    """

    def __init__(self, api_client: client.ApiClient, *, provider: str = "istio") -> None:
        self._api_client = api_client
        self._provider = provider
        self._routers: dict[str, TrafficRouter] = {provider: router_for(provider)(api_client)}

    def _router(self, provider: str | None = None) -> TrafficRouter:
        name = provider or self._provider
        router = self._routers.get(name)
        if router is None:
            router = self._routers[name] = router_for(name)(self._api_client)
        return router

    @activity.defn(name=ActivityName.RECONCILE_ROUTES)
    def reconcile_routes(self, input: RoutesInput) -> None:
        """Create or converge the routes (new ones 100/0 to the primary; live weights kept)."""
        self._router(input.canary.spec.provider).reconcile(input.canary)

    @activity.defn(name=ActivityName.SET_WEIGHTS)
    def set_weights(self, input: SetWeightsInput) -> Weights:
        """Route ``primary``/``canary`` percent (no write when already there); the weights set."""
        self._router().set_routes(input.ref, input.primary, input.canary)
        return Weights(primary=input.primary, canary=input.canary)

    @activity.defn(name=ActivityName.GET_WEIGHTS)
    def get_weights(self, input: CanaryRef) -> Weights:
        """The weights the router currently applies."""
        return self._router().get_routes(input)
