"""The Gateway API router (``provider: gatewayapi:v1``): one HTTPRoute per Canary.

What Flagger's ``pkg/router/gateway_api.go`` renders for a Canary whose service is ``podinfo``:
HTTPRoute ``podinfo`` (gateway.networking.k8s.io/v1) with ``parentRefs`` from
``service.gatewayRefs``, ``hostnames`` from ``service.hosts``, and one rule whose matches come
from ``service.match`` (Istio's HTTPMatchRequest: uri exact/prefix/regex, method, headers and
query parameters exact/regex; none given is ``PathPrefix /``), whose filters come from
``service.headers`` (request/response header modifiers, names sorted) and ``service.rewrite``
(URLRewrite: authority → hostname, uri → ReplacePrefixMatch, or ReplaceFullPath when its type
says so), whose timeouts come from ``service.timeout`` (request) and ``service.backendTimeout``
(backendRequest), and whose two backendRefs are the ``-primary`` and ``-canary`` Services on
the service port, weighted 100 − w and w.

Reconciling keeps the live weights (Flagger ignores them when it compares), and setting them
replaces ``spec.rules`` by JSON merge patch with the resourceVersion just read. Its builtin
checks are the application's own HTTP metrics (`activities.router._http_metrics`), as Flagger's
observer factory gives every ``gatewayapi`` provider its HTTP observer: Gateway API does not say
which data plane serves the route, so the checks read what the application itself exports.
"""

from __future__ import annotations

import json
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
from activities.router._http_metrics import REQUEST_DURATION, REQUEST_SUCCESS_RATE
from activities.router.base import Provider, RbacRule
from workflows.activity_api import CanaryRef, Weights
from workflows.spec import Canary

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
HTTP_ROUTE = Kind("HTTPRoute", group=GROUP, version=VERSION, plural="httproutes")


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _string_match(value: Any, kinds: dict[str, str], what: str) -> tuple[str, str]:
    for key, type_ in kinds.items():
        if isinstance(value, dict) and value.get(key):
            return type_, str(value[key])
    raise InvalidSpec(f"Gateway API does not support the {what} match {value!r}")


def route_matches(match: list[dict[str, Any]] | None) -> list[Obj]:
    """Istio HTTPMatchRequests as HTTPRouteMatches (Flagger's mapRouteMatches)."""
    matches: list[Obj] = []
    for request in match or []:
        out: Obj = {}
        if request.get("uri"):
            kinds = {"regex": "RegularExpression", "exact": "Exact", "prefix": "PathPrefix"}
            type_, value = _string_match(request["uri"], kinds, "uri")
            out["path"] = {"type": type_, "value": value}
        if request.get("method"):
            out["method"] = _string_match(request["method"], {"exact": "Exact"}, "method")[1]
        for field, key in (("headers", "headers"), ("queryParams", "queryParams")):
            items = []
            for name, value in (request.get(key) or {}).items():
                kinds = {"exact": "Exact", "regex": "RegularExpression"}
                type_, text = _string_match(value, kinds, key)
                items.append({"name": name, "type": type_, "value": text})
            if items:
                out[field] = items
        if out:
            matches.append(out)
    return matches or [{"path": {"type": "PathPrefix", "value": "/"}}]


def _header_filter(operations: dict[str, Any]) -> Obj:
    modifier: Obj = {}
    for op in ("add", "set"):
        pairs = sorted((operations.get(op) or {}).items())
        if pairs:
            modifier[op] = [{"name": k, "value": v} for k, v in pairs]
    if operations.get("remove"):
        modifier["remove"] = list(operations["remove"])
    return modifier


def route_filters(canary: Canary) -> list[Obj]:
    """Header modifiers and URL rewrite (Flagger's makeFilters)."""
    service, filters = canary.spec.service, []
    headers = service.headers or {}
    for side, type_ in (
        ("request", "RequestHeaderModifier"),
        ("response", "ResponseHeaderModifier"),
    ):
        if headers.get(side) is not None:
            key = type_[0].lower() + type_[1:]
            filters.append({"type": type_, key: _header_filter(headers[side])})
    rewrite = service.rewrite
    if rewrite:
        url: Obj = {}
        if rewrite.get("authority"):
            url["hostname"] = rewrite["authority"]
        if rewrite.get("uri"):
            full = rewrite.get("type") == "ReplaceFullPath"
            kind = "ReplaceFullPath" if full else "ReplacePrefixMatch"
            field = "replaceFullPath" if full else "replacePrefixMatch"
            url["path"] = {"type": kind, field: rewrite["uri"]}
        filters.append({"type": "URLRewrite", "urlRewrite": url})
    return filters


def _backend(name: str, port: int, weight: int) -> Obj:
    return {"group": "", "kind": "Service", "name": name, "port": port, "weight": weight}


def weighted_rule(canary: Canary, primary: int = 100, canary_weight: int = 0) -> Obj:
    """The one rule: matches, filters, timeouts and the two weighted backends."""
    service, apex = canary.spec.service, canary.service_name
    rule: Obj = {"matches": route_matches(service.match)}
    filters = route_filters(canary)
    if filters:
        rule["filters"] = filters
    rule["backendRefs"] = [
        _backend(apex + "-primary", service.port, primary),
        _backend(apex + "-canary", service.port, canary_weight),
    ]
    timeouts = {}
    if service.timeout:
        timeouts["request"] = service.timeout
    if service.backend_timeout:
        timeouts["backendRequest"] = service.backend_timeout
    if timeouts:
        rule["timeouts"] = timeouts
    return rule


def ab_matches(canary: Canary) -> list[dict[str, Any]]:
    """A/B testing's matches: each of ``analysis.match`` ANDed with each of ``service.match``
    (Flagger's mergeMatchConditions), as Istio HTTPMatchRequests."""
    merged: list[dict[str, Any]] = []
    for service_match in canary.spec.service.match or [{}]:
        for ab in canary.spec.analysis.match or []:
            ab_match = ab.model_dump(by_alias=True, exclude_none=True)
            for field in ("sourceLabels", "withoutHeaders", "ignoreUriCase", "name"):
                if ab_match.get(field):
                    raise InvalidSpec(
                        f"analysis.match {field} cannot be routed by Gateway API: match on "
                        "headers, query parameters, the path or the method, or use provider istio"
                    )
            both = {**service_match, **ab_match}
            for key in ("headers", "queryParams"):
                if service_match.get(key) or ab_match.get(key):
                    both[key] = {**(service_match.get(key) or {}), **(ab_match.get(key) or {})}
            merged.append(both)
    return merged


def render_http_route(canary: Canary, primary: int = 100, canary_weight: int = 0) -> Obj:
    """The HTTPRoute ``<svc>`` routing ``primary``/``canary_weight`` percent.

    With ``analysis.match`` (A/B testing) the weights are those of a first rule that only the
    matched requests take; a second rule sends everything else to the primary, as Flagger's."""
    service = canary.spec.service
    if not service.gateway_refs:
        raise InvalidSpec("service.gatewayRefs must name a Gateway with provider gatewayapi")
    custom = service.apex
    spec: Obj = {"parentRefs": _copy(service.gateway_refs)}
    if service.hosts:
        spec["hostnames"] = list(service.hosts)
    rule = weighted_rule(canary, primary, canary_weight)
    if canary.spec.analysis.match:
        everyone = weighted_rule(canary)
        everyone["backendRefs"] = everyone["backendRefs"][:1]  # the primary only
        spec["rules"] = [{**rule, "matches": route_matches(ab_matches(canary))}, everyone]
    else:
        spec["rules"] = [rule]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HTTPRoute",
        "metadata": {
            "name": canary.service_name,
            "namespace": canary.namespace,
            "labels": {**((custom or {}).get("labels") or {}), MANAGED_BY[0]: MANAGED_BY[1]},
            "annotations": {
                **((custom or {}).get("annotations") or {}),
                CANARY_ANNOTATION: f"{canary.namespace}/{canary.name}",
            },
        },
        "spec": spec,
    }


def find_weights(route: Obj, apex: str) -> tuple[int, Weights] | None:
    """The index of the rule with both backends, and its weights; None when absent."""
    for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        refs = {ref.get("name"): int(ref.get("weight", 1)) for ref in rule.get("backendRefs") or []}
        if apex + "-primary" in refs and apex + "-canary" in refs:
            return index, Weights(primary=refs[apex + "-primary"], canary=refs[apex + "-canary"])
    return None


class GatewayApiRouter:
    """`TrafficRouter` for Gateway API, through ``CustomObjectsApi`` on HTTPRoute v1."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._res = Resources(api_client)

    def reconcile(self, canary: Canary) -> None:
        owner = CanaryOwner(self._res, canary.namespace, canary.name)
        live = self._res.get(HTTP_ROUTE, canary.namespace, canary.service_name)
        found = find_weights(live, canary.service_name) if live else None
        weights = found[1] if found else Weights(primary=100, canary=0)
        wanted = render_http_route(canary, weights.primary, weights.canary)
        basis = render_http_route(canary)  # weights are not part of what must converge
        converge(self._res, HTTP_ROUTE, wanted, basis=basis, whole_spec=True, owner=owner)

    def set_routes(self, ref: CanaryRef, primary: int, canary: int) -> bool:
        if primary + canary != 100:
            raise InvalidSpec(f"weights must add up to 100, got {primary} + {canary}")
        live, index, current = self._route(ref)
        if (current.primary, current.canary) == (primary, canary):
            return False
        rules = _copy(live["spec"]["rules"])
        wanted = {ref.service + "-primary": primary, ref.service + "-canary": canary}
        for backend in rules[index]["backendRefs"]:
            if backend.get("name") in wanted:
                backend["weight"] = wanted[backend["name"]]
        patch = {
            "metadata": {"resourceVersion": live["metadata"]["resourceVersion"]},
            "spec": {"rules": rules},
        }
        self._res.patch(HTTP_ROUTE, ref.namespace, ref.service, patch)
        return True

    def get_routes(self, ref: CanaryRef) -> Weights:
        return self._route(ref)[2]

    def finalize(self, ref: CanaryRef) -> None:
        live = self._res.get(HTTP_ROUTE, ref.namespace, ref.service)
        if live is not None and labels_of(live).get(MANAGED_BY[0]) == MANAGED_BY[1]:
            self._res.delete(HTTP_ROUTE, ref.namespace, ref.service)

    def _route(self, ref: CanaryRef) -> tuple[Obj, int, Weights]:
        live = self._res.get(HTTP_ROUTE, ref.namespace, ref.service)
        found = find_weights(live, ref.service) if live else None
        if live is None or found is None:
            raise RoutesNotFound(
                f"HTTPRoute {ref.service}.{ref.namespace} has no rule with backends "
                f"{ref.service}-primary and {ref.service}-canary: reconcile the routes first"
            )
        return live, found[0], found[1]


PROVIDER = Provider(
    name="gatewayapi:v1",
    router=GatewayApiRouter,
    queries={"request-success-rate": REQUEST_SUCCESS_RATE, "request-duration": REQUEST_DURATION},
    kinds=(f"httproutes.{GROUP}",),
    rbac=(RbacRule(GROUP, ("httproutes",), ("get", "create", "update", "patch")),),
)
