"""Traffic routers: the `TrafficRouter` seam, one module per implementation, the activities.

Public surface: `TrafficRouter` (the Protocol), `router_for` (provider name → factory; an
unknown name is a `ConfigurationError`), `IstioRouter`, and `RouterActivities`.
"""

from activities.router.activities import RouterActivities
from activities.router.base import TrafficRouter, router_for
from activities.router.istio import IstioRouter

__all__ = ["IstioRouter", "RouterActivities", "TrafficRouter", "router_for"]
