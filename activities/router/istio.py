"""The Istio router: one VirtualService and two DestinationRules per Canary (networking/v1beta1).

What Flagger's ``pkg/router/istio.go`` creates for a Canary whose service is ``podinfo``:

- VirtualService ``podinfo`` with hosts ``podinfo`` plus ``service.hosts``, gateways
  ``service.gateways``, or ``mesh`` when none is named (then traffic inside the mesh, e.g. from
  the load tester, is split too), and one HTTP route — carrying the spec's match, rewrite,
  timeout, retries, headers and corsPolicy — to ``podinfo-primary`` (weight 100 − w) and
  ``podinfo-canary`` (weight w);
- DestinationRules ``podinfo-primary`` and ``podinfo-canary`` with ``service.trafficPolicy``.

Its builtin checks are the PromQL Flagger runs for Istio (`activities.router._istio_metrics`).

Rendering is pure (`render_virtual_service`, `render_destination_rule`); `IstioRouter` reads and
converges. Reconciling keeps the live weights (as Flagger ignores weights when it diffs), and the
fingerprint of the VirtualService is taken at 100/0, so a reconcile after a weight change writes
nothing. Setting weights sends a JSON merge patch of ``spec.http`` — a merge patch replaces a
list whole, which is what a route list needs — with the ``resourceVersion`` just read, so a
concurrent writer turns the patch into a retryable `Conflict` rather than a lost update.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from activities.errors import InvalidSpec, RoutesNotFound
from activities.kubernetes.resources import (
    CANARY_ANNOTATION,
    MANAGED_BY,
    CanaryOwner,
    Kind,
    Obj,
    Resources,
    converge,
    labels_of,
)
from activities.router._istio_metrics import REQUEST_DURATION, REQUEST_SUCCESS_RATE
from activities.router._istio_routes import (
    STICKY_ROUTE,
    ab_routes,
    session_routes,
    with_mirror,
)
from activities.router.base import Provider, RbacRule
from workflows.activity_api import CanaryRef, StickySession, Weights
from workflows.spec import Canary

GROUP, VERSION = "networking.istio.io", "v1beta1"
VIRTUAL_SERVICE = Kind("VirtualService", group=GROUP, version=VERSION, plural="virtualservices")
DESTINATION_RULE = Kind("DestinationRule", group=GROUP, version=VERSION, plural="destinationrules")
MESH_GATEWAY = "mesh"

# Route fields copied from the Canary's service spec (Istio's names).
_ROUTE_FIELDS = (
    ("match", "match"),
    ("rewrite", "rewrite"),
    ("timeout", "timeout"),
    ("retries", "retries"),
    ("headers", "headers"),
    ("cors_policy", "corsPolicy"),
)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _hosts(apex: str) -> tuple[str, str]:
    return apex + "-primary", apex + "-canary"


def _metadata(canary: Canary, name: str, custom: Mapping[Any, Any] | None = None) -> Obj:
    custom = custom or {}
    return {
        "name": name,
        "namespace": canary.namespace,
        "labels": {**(custom.get("labels") or {}), MANAGED_BY[0]: MANAGED_BY[1]},
        "annotations": {
            **(custom.get("annotations") or {}),
            CANARY_ANNOTATION: f"{canary.namespace}/{canary.name}",
        },
    }


def _destination(canary: Canary, host: str, weight: int) -> Obj:
    destination: Obj = {"host": host}
    if canary.spec.service.port_discovery:
        # As Flagger: with several ports exposed, the route must name the service port.
        destination["port"] = {"number": canary.spec.service.port}
    return {"destination": destination, "weight": weight}


def http_route(canary: Canary, primary: int = 100, canary_weight: int = 0) -> Obj:
    """The one HTTP route: the spec's match/rewrite/timeout/retries/headers/cors, two weights."""
    service = canary.spec.service
    route: Obj = {}
    for attribute, field in _ROUTE_FIELDS:
        value = getattr(service, attribute)
        if value:
            route[field] = _copy(value)
    primary_host, canary_host = _hosts(canary.service_name)
    route["route"] = [
        _destination(canary, primary_host, primary),
        _destination(canary, canary_host, canary_weight),
    ]
    return route


def http_routes(canary: Canary, primary: int = 100, canary_weight: int = 0) -> list[Obj]:
    """The Canary's routes: the weighted one, or A/B testing's matched and primary-only pair."""
    weighted = http_route(canary, primary, canary_weight)
    if not canary.spec.analysis.match:
        return [weighted]
    primary_host = _hosts(canary.service_name)[0]
    primary_only = {**weighted, "route": [_destination(canary, primary_host, 100)]}
    return ab_routes(canary, weighted, primary_only)


def render_virtual_service(canary: Canary, primary: int = 100, canary_weight: int = 0) -> Obj:
    """The VirtualService ``<svc>`` routing ``primary``/``canary_weight`` percent."""
    service, apex = canary.spec.service, canary.service_name
    hosts = list(service.hosts)
    if apex not in hosts and "*" not in hosts:
        hosts.insert(0, apex)
    # As Flagger: ``mesh`` only when no gateway is named. Explicit gateways keep in-mesh
    # callers of the host on the plain Service, out of the canary's traffic.
    gateways = list(service.gateways) or [MESH_GATEWAY]
    if service.delegation:
        # A delegate VirtualService is reached through its root: no hosts, no gateways.
        hosts, gateways = [], []
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VirtualService",
        "metadata": _metadata(canary, apex, service.apex),
        "spec": {
            "hosts": hosts,
            "gateways": gateways,
            "http": http_routes(canary, primary, canary_weight),
        },
    }


def render_destination_rule(canary: Canary, host: str) -> Obj:
    """The DestinationRule for ``host`` (``<svc>-primary`` or ``<svc>-canary``)."""
    spec: Obj = {"host": host}
    if canary.spec.service.traffic_policy:
        spec["trafficPolicy"] = _copy(canary.spec.service.traffic_policy)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DestinationRule",
        "metadata": _metadata(canary, host),
        "spec": spec,
    }


def find_route(virtual_service: Obj, apex: str) -> tuple[int, Weights] | None:
    """The index of the HTTP route to ``<apex>-canary`` and its weights; None when absent."""
    primary_host, canary_host = _hosts(apex)
    for index, route in enumerate((virtual_service.get("spec") or {}).get("http") or []):
        if route.get("name") == STICKY_ROUTE:
            continue  # session affinity's route pins cookies; the weights are the next one's
        weights = {"primary": 0, "canary": 0}
        found = False
        for destination in route.get("route") or []:
            host = (destination.get("destination") or {}).get("host")
            if host == canary_host:
                found = True
                weights["canary"] = int(destination.get("weight") or 0)
            elif host == primary_host:
                weights["primary"] = int(destination.get("weight") or 0)
        if found:
            return index, Weights(**weights)
    return None


class IstioRouter:
    """`TrafficRouter` for Istio, through ``CustomObjectsApi`` on networking.istio.io/v1beta1."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._res = Resources(api_client)

    def reconcile(self, canary: Canary) -> None:
        # Created routes are owned by the Canary when it is in the cluster (Flagger's
        # NewControllerRef), so deleting the Canary deletes them; existing ones get no owner.
        owner = CanaryOwner(self._res, canary.namespace, canary.name)
        primary_host, canary_host = _hosts(canary.service_name)
        for host in (canary_host, primary_host):
            rule = render_destination_rule(canary, host)
            converge(self._res, DESTINATION_RULE, rule, whole_spec=True, owner=owner)
        live = self._res.get(VIRTUAL_SERVICE, canary.namespace, canary.service_name)
        found = find_route(live, canary.service_name) if live else None
        weights = found[1] if found else Weights(primary=100, canary=0)
        wanted = render_virtual_service(canary, weights.primary, weights.canary)
        if live is not None and found is not None:
            # A mirror set by set_mirror is kept, as weights are (Flagger's diff ignores both).
            live_route = live["spec"]["http"][found[0]]
            kept = {k: live_route[k] for k in ("mirror", "mirrorPercentage") if k in live_route}
            wanted["spec"]["http"][0].update(kept)
        basis = render_virtual_service(canary)  # weights are not part of what must converge
        converge(self._res, VIRTUAL_SERVICE, wanted, basis=basis, whole_spec=True, owner=owner)

    def set_routes(self, ref: CanaryRef, primary: int, canary: int) -> bool:
        if primary + canary != 100:
            raise InvalidSpec(f"weights must add up to 100, got {primary} + {canary}")
        live, index, current = self._route(ref)
        if (current.primary, current.canary) == (primary, canary):
            return False
        http = _copy(live["spec"]["http"])
        primary_host, canary_host = _hosts(ref.service)
        wanted = {primary_host: primary, canary_host: canary}
        for destination in http[index]["route"]:
            host = (destination.get("destination") or {}).get("host")
            if host in wanted:
                destination["weight"] = wanted[host]
        patch = {
            "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
            "spec": {"http": http},
        }
        self._res.patch(VIRTUAL_SERVICE, ref.namespace, ref.service, patch)
        return True

    def set_sticky_routes(
        self, ref: CanaryRef, primary: int, canary: int, session: StickySession
    ) -> bool:
        if primary + canary != 100:
            raise InvalidSpec(f"weights must add up to 100, got {primary} + {canary}")
        live, index, _ = self._route(ref)
        weighted = _copy(live["spec"]["http"][index])
        primary_host, canary_host = _hosts(ref.service)
        wanted = {primary_host: primary, canary_host: canary}
        for destination in weighted["route"]:
            destination.pop("headers", None)  # the cookie is set again below, or not
            host = (destination.get("destination") or {}).get("host")
            if host in wanted:
                destination["weight"] = wanted[host]
        http = session_routes(
            weighted,
            service_match=session.service_match,
            canary_host=canary_host,
            canary_weight=canary,
            cookie=session.cookie,
            previous_cookie=session.previous_cookie,
            max_age=session.max_age,
        )
        if http == live["spec"]["http"]:
            return False
        patch = {
            "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
            "spec": {"http": http},
        }
        self._res.patch(VIRTUAL_SERVICE, ref.namespace, ref.service, patch)
        return True

    def set_mirror(self, ref: CanaryRef, *, mirrored: bool, mirror_weight: int) -> bool:
        live, index, _ = self._route(ref)
        http = _copy(live["spec"]["http"])
        wanted = with_mirror(
            http[index], _hosts(ref.service)[1], mirrored=mirrored, mirror_weight=mirror_weight
        )
        if wanted == http[index]:
            return False
        http[index] = wanted
        patch = {
            "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
            "spec": {"http": http},
        }
        self._res.patch(VIRTUAL_SERVICE, ref.namespace, ref.service, patch)
        return True

    def get_routes(self, ref: CanaryRef) -> Weights:
        return self._route(ref)[2]

    def finalize(self, ref: CanaryRef) -> None:
        # Only what Coalmine created: a VirtualService the user wrote stays.
        names = [(VIRTUAL_SERVICE, ref.service)]
        names += [(DESTINATION_RULE, host) for host in _hosts(ref.service)]
        for kind, name in names:
            live = self._res.get(kind, ref.namespace, name)
            if live is not None and labels_of(live).get(MANAGED_BY[0]) == MANAGED_BY[1]:
                self._res.delete(kind, ref.namespace, name)

    def _route(self, ref: CanaryRef) -> tuple[Obj, int, Weights]:
        live = self._res.get(VIRTUAL_SERVICE, ref.namespace, ref.service)
        found = find_route(live, ref.service) if live else None
        if live is None or found is None:
            primary_host, canary_host = _hosts(ref.service)
            raise RoutesNotFound(
                f"VirtualService {ref.service}.{ref.namespace} does not contain routes for "
                f"{primary_host} and {canary_host}: reconcile the routes first"
            )
        return live, found[0], found[1]


PROVIDER = Provider(
    name="istio",
    router=IstioRouter,
    queries={"request-success-rate": REQUEST_SUCCESS_RATE, "request-duration": REQUEST_DURATION},
    kinds=(f"virtualservices.{GROUP}", f"destinationrules.{GROUP}"),
    rbac=(
        # Weights are set by patching the VirtualService's routes.
        RbacRule(GROUP, ("virtualservices",), ("get", "create", "update", "patch")),
        RbacRule(GROUP, ("destinationrules",), ("get", "create", "update")),
    ),
)
