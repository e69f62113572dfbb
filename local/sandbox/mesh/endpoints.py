"""Where a Service's traffic may go: its EndpointSlices, read as Istio's control plane reads them.

A Service's slices are the ``discovery.k8s.io/v1`` EndpointSlices labelled
``kubernetes.io/service-name: <service>`` in its namespace (the cache indexes them by that label,
`BY_SERVICE`). An endpoint takes traffic when ``conditions.ready`` is not false — unset means ready,
as the API documents and Istio reads it; a terminating endpoint is not ready — and its
``targetRef`` names the pod the mesh hands the request to. The slice's port of the same name as
the Service port is the container port (a named ``targetPort`` resolved per pod by the endpoint
slice controller); without one, the Service's numeric ``targetPort``. A pod in several slices (one
moving between them) counts once. Core/v1 Endpoints are not read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

Obj = dict[str, Any]

GROUP, PLURAL = "discovery.k8s.io", "endpointslices"
SERVICE_LABEL = "kubernetes.io/service-name"
BY_SERVICE = "service"
"""The cache index of slices: ``<namespace>/<service>``."""


def service_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def slice_services(endpoint_slice: Obj) -> list[str]:
    """The `BY_SERVICE` index values of a slice (none for a slice of no Service)."""
    md = endpoint_slice.get("metadata") or {}
    service = (md.get("labels") or {}).get(SERVICE_LABEL)
    return [service_key(str(md.get("namespace") or ""), str(service))] if service else []


class Endpoint(NamedTuple):
    """A ready pod of a Service and the container port the Service port reaches on it."""

    pod: str
    port: int | None


def _slice_port(endpoint_slice: Obj, port_name: str, fallback: int | None) -> int | None:
    for port in endpoint_slice.get("ports") or []:
        if (port.get("name") or "") == port_name and port.get("port") is not None:
            return int(port["port"])
    return fallback


def ready_endpoints(
    slices: Iterable[Obj], *, port_name: str | None, fallback_port: int | None
) -> list[Endpoint]:
    """The ready pod endpoints of a Service port, one per pod, ordered by pod name (so that
    round-robin takes pods in a stable order whichever slice holds them)."""
    found: dict[str, int | None] = {}
    for endpoint_slice in slices:
        port = _slice_port(endpoint_slice, port_name or "", fallback_port)
        for endpoint in endpoint_slice.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") != "Pod" or not ref.get("name"):
                continue
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found.setdefault(str(ref["name"]), port)
    return [Endpoint(pod, found[pod]) for pod in sorted(found)]
