"""The sandbox's Istio-like mesh: HTTP proxy entry, VirtualService routing, Istio's metrics."""

from __future__ import annotations

from sandbox.mesh.metrics import IstioMetrics, Peer
from sandbox.mesh.proxy import Mesh

__all__ = ["IstioMetrics", "Mesh", "Peer"]
