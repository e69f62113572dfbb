"""The traffic-router providers Coalmine knows, by name: what the spec validator may accept.

Plain data, no I/O: the workflow layer may not import ``activities``, so the *names* (and what
each provider supports, which the spec validator needs) live here, and the implementations live
in ``activities/router`` — one plugin module each, collected by `activities.router.registry`,
which refuses to load when its names and these differ (and a unit test says so first).

A Canary without ``spec.provider`` uses the cluster-wide default (the worker's
``--mesh-provider``, as Flagger's ``-mesh-provider`` flag); `DEFAULT_PROVIDER` is the default of
that default. Names are Flagger's; ``gatewayapi`` alone means ``gatewayapi:v1``, as Flagger's
router factory reads any ``gatewayapi`` prefix other than ``gatewayapi:v1beta1`` as v1.
"""

from __future__ import annotations

from dataclasses import dataclass

ISTIO = "istio"
KUBERNETES = "kubernetes"
GATEWAY_API = "gatewayapi:v1"

DEFAULT_PROVIDER = ISTIO


@dataclass(frozen=True, kw_only=True)
class ProviderTraits:
    """What a provider supports, as far as validating a Canary needs to know."""

    name: str
    weighted: bool
    """Progressive traffic shifting (stepWeight/stepWeights); False: Blue/Green only."""
    fields: frozenset[str] = frozenset()
    """Provider-specific Canary fields (as written) it reads, refused for other providers."""
    ab_testing: bool = False
    """Routes ``analysis.match`` (A/B testing): matched requests to the canary."""


PROVIDERS: dict[str, ProviderTraits] = {
    ISTIO: ProviderTraits(name=ISTIO, weighted=True, ab_testing=True),
    KUBERNETES: ProviderTraits(name=KUBERNETES, weighted=False),
    GATEWAY_API: ProviderTraits(
        name=GATEWAY_API,
        weighted=True,
        fields=frozenset({"gatewayRefs", "backendTimeout"}),
        ab_testing=True,
    ),
}
"""Provider name → traits; the registry in ``activities/router`` has exactly these names."""

ALIASES: dict[str, str] = {"gatewayapi": GATEWAY_API}


def canonical(name: str) -> str | None:
    """The registered name ``name`` means, or None when no provider has it."""
    name = ALIASES.get(name, name)
    return name if name in PROVIDERS else None


def known() -> str:
    """The names, for messages: ``gatewayapi:v1, istio, kubernetes``."""
    return ", ".join(sorted(PROVIDERS))


def owner_of(field: str) -> str | None:
    """The provider that reads a provider-specific field, if one Coalmine knows does."""
    for traits in PROVIDERS.values():
        if field in traits.fields:
            return traits.name
    return None
