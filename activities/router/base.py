"""The `TrafficRouter` seam, and what a provider plugin exports: `Provider`.

As Flagger's ``pkg/router/router.go``, a router does four things: reconcile its objects from the
Canary, set the primary/canary weights, read them back, and finalize (remove what it created).
Its methods take what identifies the Canary (the whole Canary to reconcile, a `CanaryRef`
otherwise), and `activities.router.registry` picks the implementation per Canary.

A provider is one plugin module in this package exporting one `Provider`: its router, its
builtin metric query templates (what ``request-success-rate`` and ``request-duration`` mean on
that data plane), the kinds it manages and the RBAC rules the worker needs for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from kubernetes import client

from workflows.activity_api import CanaryRef, StickySession, Weights
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


@runtime_checkable
class MirroringRouter(Protocol):
    """A `TrafficRouter` that can also copy the weighted route's traffic to the canary."""

    def set_mirrored_routes(
        self, ref: CanaryRef, primary: int, canary: int, *, mirrored: bool, mirror_weight: int
    ) -> bool:
        """The weights, and mirror (``mirror_weight`` percent, 0 is all) or not, in one write
        (so the canary never gets its own traffic mirrored back); False when already so."""


@runtime_checkable
class StickyRouter(Protocol):
    """A `TrafficRouter` that can also keep users on the canary by a cookie."""

    def set_sticky_routes(
        self, ref: CanaryRef, primary: int, canary: int, session: StickySession
    ) -> bool:
        """The weights plus the session-affinity routes; False when already so."""


RouterFactory = Callable[[client.ApiClient], TrafficRouter]


@dataclass(frozen=True)
class RbacRule:
    """One rule of the worker's ClusterRole, as deploy/manifests/cluster/clusterrole.yaml has it."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def permissions(self) -> set[tuple[str, str, str]]:
        """(group, resource, verb) triples, as tests compare RBAC."""
        return {(self.api_group, r, v) for r in self.resources for v in self.verbs}


@dataclass(frozen=True, kw_only=True)
class Provider:
    """Everything Coalmine knows about one traffic-router provider."""

    name: str
    """Flagger's name for it (``spec.provider``, ``--mesh-provider``)."""
    router: RouterFactory
    """Builds the `TrafficRouter` on the worker's Kubernetes client."""
    queries: Mapping[str, str] = field(default_factory=dict)
    """Builtin metric name → PromQL template (Flagger's variables: namespace, target, interval)."""
    kinds: tuple[str, ...] = ()
    """``<plural>.<group>`` of the objects its router creates (``virtualservices.networking…``)."""
    rbac: tuple[RbacRule, ...] = ()
    """What the worker must be allowed to do on those kinds."""
