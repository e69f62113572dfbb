"""Settings of the simulated world (controllers, workloads, mesh), built at start-up, injected.

Grouped in one frozen dataclass, one docstring per field, so a test or ``coalmine sandbox up``
states exactly what differs from the defaults and nothing reads the environment behind the caller's
back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorldSettings:
    """How the simulated cluster behaves."""

    pod_ready_delay: float = 0.5
    """Seconds from a pod's start until it is Ready (per pod: ``READY_DELAY_ANNOTATION``)."""

    tick_interval: float = 1.0
    """Seconds between the controllers' periodic passes (progress deadlines, HPA bounds)."""

    node_name: str = "sandbox-node"
    """The one node every pod is scheduled to."""

    event_ttl: float = 3600.0
    """Seconds after their last occurrence that Events are deleted (the apiserver's default TTL)."""

    kubelet_events: bool = True
    """Record the per-pod Events of the scheduler and kubelet (Scheduled, Pulling, Pulled…)."""


READY_DELAY_ANNOTATION = "sandbox.coalmine.dev/ready-delay-seconds"
"""Pod (template) annotation overriding ``WorldSettings.pod_ready_delay`` for that pod."""

UNPULLABLE_MARKERS = ("unpullable", "invalid.example")
"""An image whose reference contains one of these cannot be pulled: its pod never becomes ready."""
