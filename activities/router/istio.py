"""The Istio router: one VirtualService and two DestinationRules per Canary (networking/v1beta1).

What Flagger's ``pkg/router/istio.go`` creates for a Canary whose service is ``podinfo``:

- VirtualService ``podinfo`` with hosts ``podinfo`` plus ``service.hosts``, gateways
  ``service.gateways``, or ``mesh`` when none is named (then traffic inside the mesh, e.g. from
  the load tester, is split too), and one HTTP route — carrying the spec's match, rewrite,
  timeout, retries, headers and corsPolicy — to ``podinfo-primary`` (weight 100 − w) and
  ``podinfo-canary`` (weight w);
- DestinationRules ``podinfo-primary`` and ``podinfo-canary`` with ``service.trafficPolicy``.

A TCP service (``service.appProtocol: tcp``) gets one weighted ``tcp`` route instead of the
HTTP one (`activities.router._istio_routes`). With ``service.portDiscovery`` and a gateway (or
delegation), each destination names ``service.port``, as the Services then have several.

Its builtin checks are the PromQL Flagger runs for Istio (`activities.router._istio_metrics`).

Rendering is pure (`render_virtual_service`, `render_destination_rule`); `IstioRouter` reads and
converges. Reconciling keeps the live weights (as Flagger ignores weights when it diffs), and the
fingerprint of the VirtualService is taken at 100/0, so a reconcile after a weight change writes
nothing. Setting weights sends a JSON merge patch of ``spec.http`` (``spec.tcp``) — a merge
patch replaces a list whole, which is what a route list needs — with the ``resourceVersion``
just read, so a concurrent writer turns the patch into a retryable `Conflict` rather than a
lost update.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

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
    STICKY_ROUTES,
    ab_routes,
    is_tcp,
    l4_match,
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
    service = canary.spec.service
    through_gateway = bool(service.gateways) and service.gateways[0] != MESH_GATEWAY
    if service.port_discovery and (through_gateway or service.delegation):
        # As Flagger: a gateway (or a root VirtualService) reaching a Service of several ports
        # must be told which one; in the mesh the caller's port picks it.
        destination["port"] = {"number": service.port}
    return {"destination": destination, "weight": weight}


def http_route(canary: Canary, primary: int = 100, canary_weight: int = 0) -> Obj:
    """The one HTTP route: the spec's match/rewrite/timeout/retries/headers/cors, two weights."""
    service = canary.spec.service
    route: Obj = {}
    for attribute, field in _ROUTE_FIELDS:
        value = getattr(service, attribute)
        if value:
            route[field] = _copy(value)
    route["route"] = _destinations(canary, primary, canary_weight)
    return route


def _destinations(canary: Canary, primary: int, canary_weight: int) -> list[Obj]:
    primary_host, canary_host = _hosts(canary.service_name)
    return [
        _destination(canary, primary_host, primary),
        _destination(canary, canary_host, canary_weight),
    ]


def http_routes(canary: Canary, primary: int = 100, canary_weight: int = 0) -> list[Obj]:
    """The Canary's routes: the weighted one, or A/B testing's matched and primary-only pair."""
    weighted = http_route(canary, primary, canary_weight)
    if not canary.spec.analysis.match:
        return [weighted]
    primary_host = _hosts(canary.service_name)[0]
    primary_only = {**weighted, "route": [_destination(canary, primary_host, 100)]}
    return ab_routes(canary, weighted, primary_only)


def tcp_routes(canary: Canary, primary: int = 100, canary_weight: int = 0) -> list[Obj]:
    """A TCP service's one route: the ports of ``service.match``, two weights."""
    route: Obj = {}
    match = l4_match(canary)
    if match:
        route["match"] = match
    route["route"] = _destinations(canary, primary, canary_weight)
    return [route]


def routes_field(canary: Canary) -> str:
    """Which list of the VirtualService holds the Canary's routes: ``tcp`` or ``http``."""
    return "tcp" if is_tcp(canary) else "http"


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
    routes = tcp_routes if is_tcp(canary) else http_routes
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VirtualService",
        "metadata": _metadata(canary, apex, service.apex),
        "spec": {
            "hosts": hosts,
            "gateways": gateways,
            routes_field(canary): routes(canary, primary, canary_weight),
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


def find_route(virtual_service: Obj, apex: str, field: str = "http") -> tuple[int, Weights] | None:
    """The index of the route to ``<apex>-canary`` in ``spec.<field>`` (``http`` or ``tcp``)
    and its weights; None when absent."""
    primary_host, canary_host = _hosts(apex)
    for index, route in enumerate((virtual_service.get("spec") or {}).get(field) or []):
        if route.get("name") in STICKY_ROUTES:
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


class _Route(NamedTuple):
    """The weighted route of a live VirtualService: where it is and what it routes."""

    live: Obj
    field: str
    """``http`` or ``tcp``: the list of ``spec`` that holds it."""
    position: int
    weights: Weights


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
        field = routes_field(canary)
        live = self._res.get(VIRTUAL_SERVICE, canary.namespace, canary.service_name)
        found = find_route(live, canary.service_name, field) if live else None
        weights = found[1] if found else Weights(primary=100, canary=0)
        wanted = render_virtual_service(canary, weights.primary, weights.canary)
        if live is not None and found is not None and field == "http":
            # A mirror (set_mirrored_routes) is kept, as weights are (Flagger's diff ignores both).
            live_route = live["spec"]["http"][found[0]]
            kept = {k: live_route[k] for k in ("mirror", "mirrorPercentage") if k in live_route}
            wanted["spec"]["http"][0].update(kept)
        basis = render_virtual_service(canary)  # weights are not part of what must converge
        converge(self._res, VIRTUAL_SERVICE, wanted, basis=basis, whole_spec=True, owner=owner)

    def set_routes(self, ref: CanaryRef, primary: int, canary: int) -> bool:
        return self._set_routes(ref, primary, canary, mirror=None)

    def set_mirrored_routes(
        self, ref: CanaryRef, primary: int, canary: int, *, mirrored: bool, mirror_weight: int
    ) -> bool:
        return self._set_routes(ref, primary, canary, mirror=(mirrored, mirror_weight))

    def _set_routes(
        self, ref: CanaryRef, primary: int, canary: int, *, mirror: tuple[bool, int] | None
    ) -> bool:
        """The weights, and the mirror when ``mirror`` is given (else the live one is kept), in
        one read and at most one write, as Flagger's ``SetRoutes`` writes both at once."""
        if primary + canary != 100:
            raise InvalidSpec(f"weights must add up to 100, got {primary} + {canary}")
        found = self._route(ref)
        if mirror is not None and found.field != "http" and mirror[0]:
            raise InvalidSpec(_tcp_cannot(ref, "mirror traffic"))
        live_routes = found.live["spec"][found.field]
        routes = _copy(live_routes)
        primary_host, canary_host = _hosts(ref.service)
        changed = (found.weights.primary, found.weights.canary) != (primary, canary)
        if changed:
            wanted = {primary_host: primary, canary_host: canary}
            for destination in routes[found.position]["route"]:
                host = (destination.get("destination") or {}).get("host")
                if host in wanted:
                    destination["weight"] = wanted[host]
        if mirror is not None and found.field == "http":
            route = with_mirror(
                routes[found.position], canary_host, mirrored=mirror[0], mirror_weight=mirror[1]
            )
            changed = changed or route != live_routes[found.position]
            routes[found.position] = route
        if not changed:
            return False
        self._patch(ref, found, routes)
        return True

    def set_sticky_routes(
        self, ref: CanaryRef, primary: int, canary: int, session: StickySession
    ) -> bool:
        if primary + canary != 100:
            raise InvalidSpec(f"weights must add up to 100, got {primary} + {canary}")
        found = self._http_route(ref, "session affinity")
        weighted = _copy(found.live["spec"]["http"][found.position])
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
            primary_cookie=session.primary_cookie,
            primary_max_age=session.primary_max_age,
        )
        if http == found.live["spec"]["http"]:
            return False
        self._patch(ref, found, http)
        return True

    def get_routes(self, ref: CanaryRef) -> Weights:
        return self._route(ref).weights

    def finalize(self, ref: CanaryRef) -> None:
        # Only what Coalmine created: a VirtualService the user wrote stays.
        names = [(VIRTUAL_SERVICE, ref.service)]
        names += [(DESTINATION_RULE, host) for host in _hosts(ref.service)]
        for kind, name in names:
            live = self._res.get(kind, ref.namespace, name)
            if live is not None and labels_of(live).get(MANAGED_BY[0]) == MANAGED_BY[1]:
                self._res.delete(kind, ref.namespace, name)

    def _patch(self, ref: CanaryRef, found: _Route, routes: list[Obj]) -> None:
        """Write one route list whole (a merge patch replaces a list), guarded by the
        ``resourceVersion`` just read."""
        patch = {
            "metadata": {"resourceVersion": found.live["metadata"]["resourceVersion"]},
            "spec": {found.field: routes},
        }
        self._res.patch(VIRTUAL_SERVICE, ref.namespace, ref.service, patch)

    def _route(self, ref: CanaryRef) -> _Route:
        """The weighted route, among the HTTP routes, else the TCP ones (the reference does not
        carry the Canary's protocol; the live VirtualService says it)."""
        live = self._res.get(VIRTUAL_SERVICE, ref.namespace, ref.service)
        for field in ("http", "tcp"):
            found = find_route(live, ref.service, field) if live else None
            if live is not None and found is not None:
                return _Route(live, field, found[0], found[1])
        primary_host, canary_host = _hosts(ref.service)
        raise RoutesNotFound(
            f"VirtualService {ref.service}.{ref.namespace} does not contain routes for "
            f"{primary_host} and {canary_host}: reconcile the routes first"
        )

    def _http_route(self, ref: CanaryRef, what: str) -> _Route:
        found = self._route(ref)
        if found.field != "http":
            raise InvalidSpec(_tcp_cannot(ref, f"route by {what}"))
        return found


def _tcp_cannot(ref: CanaryRef, what: str) -> str:
    return (
        f"VirtualService {ref.service}.{ref.namespace} routes TCP (service.appProtocol: tcp), "
        f"which cannot {what}: remove it from the analysis, or use an HTTP appProtocol"
    )


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
