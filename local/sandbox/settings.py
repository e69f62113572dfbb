"""Settings of the simulated world (fake nodes, workloads, mesh), built at start-up, injected.

Grouped in one frozen dataclass, one docstring per field, so a test or ``coalmine sandbox up``
states exactly what differs from the defaults and nothing reads the environment behind the caller's
back.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.cluster.kwok import READY_DELAY_ANNOTATION


@dataclass(frozen=True)
class WorldSettings:
    """How the simulated cluster behaves."""

    pod_ready_delay: float = 0.5
    """Seconds from a pod's scheduling until kwok reports it Ready (per pod, a Go duration in the
    ``READY_DELAY_ANNOTATION`` annotation of the pod or its template overrides it)."""

    nodes: int = 3
    """Fake nodes (kwok), one per zone (``topology.kubernetes.io/zone``)."""


def ready_delay(seconds: float) -> dict[str, str]:
    """The pod-template annotation that makes a pod become Ready ``seconds`` after it starts."""
    return {READY_DELAY_ANNOTATION: f"{seconds:g}s"}


__all__ = ["READY_DELAY_ANNOTATION", "WorldSettings", "ready_delay"]
