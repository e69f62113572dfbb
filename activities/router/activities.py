"""The traffic-router activities: reconcile the routes, set and read the weights.

Synchronous (the Kubernetes client is) and idempotent: each delegates to a `TrafficRouter`,
whose methods read first and write only what differs — `set_weights` at the weights already
set makes no write, so a retry or replay after a crash does no harm.

Every activity routes with the Canary's own provider, from the registry: `reconcile_routes` by
the Canary's ``spec.provider``, `set_weights` and `get_weights` by the ``provider`` their
`CanaryRef` carries (the same value: `CanaryRef.of` copies it). Neither set — a Canary without
``spec.provider``, or a rollout started before the field existed — means the cluster-wide
default the worker was started with (``--mesh-provider``), as Flagger's ``-mesh-provider``.
"""

from __future__ import annotations

from kubernetes import client
from temporalio import activity

from activities.errors import InvalidSpec
from activities.router.base import MirroringRouter, StickyRouter, TrafficRouter
from activities.router.registry import provider_for, resolve
from workflows.activity_api import ActivityName, CanaryRef, RoutesInput, SetWeightsInput, Weights
from workflows.providers import DEFAULT_PROVIDER


class RouterActivities:
    """Activities on the traffic router.

    ``api_client``: the Kubernetes client. ``default_provider``: the cluster-wide default for
    Canaries that name none; an unknown name fails here, at worker start-up, not mid-rollout.
    """

    def __init__(
        self, api_client: client.ApiClient, *, default_provider: str = DEFAULT_PROVIDER
    ) -> None:
        self._api_client = api_client
        self._default = provider_for(default_provider).name
        self._routers: dict[str, TrafficRouter] = {}

    def _router(self, provider: str | None) -> TrafficRouter:
        plugin = resolve(provider, self._default)
        router = self._routers.get(plugin.name)
        if router is None:
            # Routers hold no state but their client: a race that builds one twice is harmless.
            router = self._routers[plugin.name] = plugin.router(self._api_client)
        return router

    @activity.defn(name=ActivityName.RECONCILE_ROUTES)
    def reconcile_routes(self, input: RoutesInput) -> None:
        """Create or converge the routes (new ones 100/0 to the primary; live weights kept)."""
        self._router(input.canary.spec.provider).reconcile(input.canary)

    @activity.defn(name=ActivityName.SET_WEIGHTS)
    def set_weights(self, input: SetWeightsInput) -> Weights:
        """Route ``primary``/``canary`` percent (no write when already there); the weights set."""
        router = self._router(input.ref.provider)
        if input.session is not None:
            if not isinstance(router, StickyRouter):
                raise InvalidSpec(f"the {input.ref.provider} provider has no session affinity")
            router.set_sticky_routes(input.ref, input.primary, input.canary, input.session)
            return Weights(primary=input.primary, canary=input.canary)
        if not isinstance(router, MirroringRouter):
            if input.mirrored:
                raise InvalidSpec(f"the {input.ref.provider} provider cannot mirror traffic")
            router.set_routes(input.ref, input.primary, input.canary)
            return Weights(primary=input.primary, canary=input.canary)
        router.set_mirrored_routes(
            input.ref,
            input.primary,
            input.canary,
            mirrored=input.mirrored,
            mirror_weight=input.mirror_weight if input.mirrored else 0,
        )
        return Weights(primary=input.primary, canary=input.canary)

    @activity.defn(name=ActivityName.GET_WEIGHTS)
    def get_weights(self, input: CanaryRef) -> Weights:
        """The weights the router currently applies."""
        return self._router(input.provider).get_routes(input)
