"""Gateway API routing: HTTPRoutes attached to Gateways, as Istio's Gateway API mode serves them.

The mesh honours ``gateway.networking.k8s.io/v1`` HTTPRoutes the way it honours VirtualServices,
so a Canary with ``provider: gatewayapi:v1`` shifts real traffic on the local cluster:

- **The Gateway's address.** Istio deploys each Gateway as a Deployment and Service named
  ``<gateway>-<gatewayClassName>`` in the Gateway's namespace (``gateway-istio.istio-ingress`` for
  the tutorial's Gateway ``gateway`` of class ``istio``); a request to that name (no Service needs
  to exist: nothing deploys one here) is routed by the Gateway. So is a request whose host is one
  of an attached HTTPRoute's ``hostnames`` (``http://www.example.com/`` through the mesh proxy), as
  the one proxy is the ingress too.
- **Attachment.** A route attaches through a ``parentRefs`` entry naming the Gateway (namespace
  defaults to the route's; ``sectionName`` and ``port`` narrow it to listeners), to the listeners
  whose ``allowedRoutes.namespaces.from`` admits the route's namespace (``Same``, the default;
  ``All``; ``Selector`` by namespace labels) and whose ``hostname`` the request host matches.
- **Which rule.** Of every attached route whose ``hostnames`` accept the host (none: any), the
  rules' matches are ranked as the Gateway API specifies: an exact path before the longest path
  prefix (element-wise: ``/api`` matches ``/api/x``, not ``/apix``) before a regular expression,
  then a method match, then the most header matches, then the most query-parameter matches; ties
  go to the older route, then by namespace/name, then rule order. Within one match, path, method,
  every header and every query parameter must hold; a rule's matches are OR-ed; a rule without
  matches matches ``PathPrefix /``.
- **What the rule does.** ``backendRefs`` to Services (port, ``weight``, default 1; a weight of
  0 takes nothing) chosen by the same smooth weighted round-robin as VirtualService routes;
  filters ``RequestHeaderModifier``, ``ResponseHeaderModifier``, ``URLRewrite`` (hostname,
  ``ReplaceFullPath``, ``ReplacePrefixMatch``) and ``RequestMirror`` (``percent`` or
  ``fraction``); a backendRef's own ``ResponseHeaderModifier``; ``timeouts.request`` (504).
  Not supported: ``RequestRedirect``, ``CORS``, ``ExtensionRef``, GRPCRoute and the TCP/TLS
  kinds, listener TLS.

Metrics: a request the Gateway routes is reported by the Gateway's own proxy
(``source_workload="<gateway>-<class>"``, ``reporter="source"``) and by the destination's, as
Istio's gateway and sidecars report it, so metric templates written for Istio's Gateway API mode
(the Gateway API tutorial's ``reporter="source"`` queries) read real numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.mesh.hosts import SUFFIX, host_matches, service_of_fqdn
from sandbox.mesh.metrics import Peer
from sandbox.mesh.routes import Destination, RequestFacts, RoutePlan, parse_duration
from worker.kubecache import Change, ClusterView

Obj = dict[str, Any]
GROUP = "gateway.networking.k8s.io"
ROUTES, GATEWAYS = "httproutes", "gateways"


# --- matching ----------------------------------------------------------------------------------


def path_matches(rule: Obj | None, path: str) -> bool:
    """An HTTPPathMatch (default ``PathPrefix /``) against a request path."""
    rule = rule or {}
    kind, value = rule.get("type", "PathPrefix"), str(rule.get("value", "/"))
    if kind == "Exact":
        return path == value
    if kind == "RegularExpression":
        return re.fullmatch(value, path) is not None
    prefix = value.rstrip("/")
    # Element-wise: "/api" matches "/api" and "/api/x", never "/apix".
    return prefix in ("", path) or path.startswith(prefix + "/")


def _value_matches(rule: Obj, value: str | None) -> bool:
    if value is None:
        return False
    if rule.get("type") == "RegularExpression":
        return re.fullmatch(str(rule.get("value", "")), value) is not None
    return value == str(rule.get("value", ""))


def match_holds(match: Obj, facts: RequestFacts) -> bool:
    """One HTTPRouteMatch: path, method, every header and query parameter must hold."""
    if not path_matches(match.get("path"), facts.path):
        return False
    if match.get("method") and match["method"] != facts.method:
        return False
    for header in match.get("headers") or []:
        if not _value_matches(header, facts.headers.get(str(header.get("name", "")).lower())):
            return False
    return all(
        _value_matches(param, facts.query.get(str(param.get("name", ""))))
        for param in match.get("queryParams") or []
    )


def precedence(match: Obj) -> tuple[int, int, int, int, int]:
    """Sort key, smaller first: the Gateway API's order of precedence between matches."""
    path = match.get("path") or {}
    kind, value = path.get("type", "PathPrefix"), str(path.get("value", "/"))
    rank = {"Exact": 0, "PathPrefix": 1}.get(kind, 2)
    return (
        rank,
        -len(value) if rank == 1 else 0,
        0 if match.get("method") else 1,
        -len(match.get("headers") or []),
        -len(match.get("queryParams") or []),
    )


# --- from a rule to a plan -------------------------------------------------------------------


def header_ops(modifier: Obj | None) -> Obj:
    """A Gateway API HTTPHeaderFilter as Istio's HeaderOperations (what the mesh applies)."""
    modifier = modifier or {}
    ops: Obj = {}
    for op in ("set", "add"):
        pairs = {str(h["name"]): str(h.get("value", "")) for h in modifier.get(op) or []}
        if pairs:
            ops[op] = pairs
    if modifier.get("remove"):
        ops["remove"] = [str(name) for name in modifier["remove"]]
    return ops


def _backend(ref: Obj, namespace: str, *, weight: int | None = None) -> Destination | None:
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
        return None  # only Services are backends here
    response: Obj | None = None
    for item in ref.get("filters") or []:
        if item.get("type") == "ResponseHeaderModifier":
            response = header_ops(item.get("responseHeaderModifier"))
    ns = str(ref.get("namespace") or namespace)
    port = ref.get("port")
    return Destination(
        host=f"{ref['name']}.{ns}{SUFFIX}",
        subset=None,
        port=int(port) if port else None,
        weight=int(ref.get("weight", 1) if weight is None else weight),
        response_headers=response or None,
    )


def _mirror_percent(mirror: Obj) -> float:
    if mirror.get("percent") is not None:
        return float(mirror["percent"])
    fraction = mirror.get("fraction")
    if fraction:
        return 100.0 * float(fraction["numerator"]) / float(fraction.get("denominator", 100))
    return 100.0


def _apply_filter(plan: RoutePlan, item: Obj, match: Obj, facts: RequestFacts, ns: str) -> None:
    kind = item.get("type")
    if kind == "RequestHeaderModifier":
        plan.request_headers = header_ops(item.get("requestHeaderModifier"))
    elif kind == "ResponseHeaderModifier":
        plan.response_headers = header_ops(item.get("responseHeaderModifier"))
    elif kind == "RequestMirror":
        mirror = item.get("requestMirror") or {}
        plan.mirror = _backend(mirror.get("backendRef") or {}, ns, weight=100)
        plan.mirror_percent = _mirror_percent(mirror)
    elif kind == "URLRewrite":
        rewrite = item.get("urlRewrite") or {}
        if rewrite.get("hostname"):
            plan.request_headers = {
                **plan.request_headers,
                "set": {**(plan.request_headers.get("set") or {}), "host": rewrite["hostname"]},
            }
        path = rewrite.get("path") or {}
        if path.get("type") == "ReplaceFullPath":
            plan.rewrite = (facts.path, str(path.get("replaceFullPath", "/")))
        elif path.get("type") == "ReplacePrefixMatch":
            prefix = str(((match.get("path") or {}).get("value")) or "/").rstrip("/")
            plan.rewrite = (prefix, str(path.get("replacePrefixMatch", "")).rstrip("/"))


def plan_rule(route: Obj, index: int, match: Obj, facts: RequestFacts) -> RoutePlan:
    """What rule ``index`` of ``route`` does with a request its ``match`` accepted."""
    md = route.get("metadata") or {}
    ns = str(md.get("namespace", "default"))
    rule = ((route.get("spec") or {}).get("rules") or [])[index]
    backends = [_backend(ref, ns) for ref in rule.get("backendRefs") or []]
    plan = RoutePlan(
        key=f"httproute:{ns}/{md.get('name')}#{index}",
        destinations=[b for b in backends if b is not None],
    )
    for item in rule.get("filters") or []:
        _apply_filter(plan, item, match, facts, ns)
    plan.timeout = parse_duration((rule.get("timeouts") or {}).get("request"))
    return plan


# --- attachment ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One match of one rule of an attached route, with what orders it against the others."""

    order: tuple[Any, ...]
    route: Obj
    index: int
    match: Obj


def _listener_admits(
    gateway: Obj, listener: Obj, route_ns: str, labels_of_ns: Callable[[str], Obj]
) -> bool:
    allowed = ((listener.get("allowedRoutes") or {}).get("namespaces")) or {}
    source = allowed.get("from", "Same")
    gateway_ns = str((gateway.get("metadata") or {}).get("namespace", "default"))
    if source == "All":
        return True
    if source == "Selector":
        wanted = ((allowed.get("selector") or {}).get("matchLabels")) or {}
        labels = labels_of_ns(route_ns)
        return all(labels.get(k) == v for k, v in wanted.items())
    return route_ns == gateway_ns


def _hostname_rank(route: Obj, host: str) -> int | None:
    """0 exact, 1 wildcard, 2 a route with no hostnames; None when the route does not take it."""
    names = [str(n).lower() for n in (route.get("spec") or {}).get("hostnames") or []]
    if not names:
        return 2
    if host in names:
        return 0
    if any(n.startswith("*.") and host_matches(n, host) for n in names):
        return 1
    return None


class GatewayIndex:
    """HTTPRoutes and Gateways from the cluster view, and the routing decisions on them."""

    def __init__(self, view: ClusterView) -> None:
        self._view = view
        self._attached: dict[tuple[str, str], list[Obj]] | None = None
        for plural in (ROUTES, GATEWAYS):
            view.listen(self._invalidate, group=GROUP, plural=plural)

    def _invalidate(self, change: Change) -> None:
        del change
        self._attached = None

    def _routes_by_gateway(self) -> dict[tuple[str, str], list[Obj]]:
        if self._attached is None:
            attached: dict[tuple[str, str], list[Obj]] = {}
            for route in self._view.scan(GROUP, ROUTES):
                ns = str((route.get("metadata") or {}).get("namespace", "default"))
                for parent in (route.get("spec") or {}).get("parentRefs") or []:
                    if (parent.get("kind") or "Gateway") != "Gateway":
                        continue
                    key = (str(parent.get("namespace") or ns), str(parent.get("name")))
                    attached.setdefault(key, []).append(route)
            self._attached = attached
        return self._attached

    def gateway_at(self, fqdn: str) -> Obj | None:
        """The Gateway whose address (``<name>-<class>.<ns>``, as Istio deploys it) this is."""
        ref = service_of_fqdn(fqdn)
        if ref is None:
            return None
        for gateway in self._view.scan(GROUP, GATEWAYS, ref.namespace):
            md, spec = gateway.get("metadata") or {}, gateway.get("spec") or {}
            if f"{md.get('name')}-{spec.get('gatewayClassName')}" == ref.name:
                return gateway
        return None

    def gateway_for_host(self, host: str) -> Obj | None:
        """A Gateway with an attached route naming ``host`` among its hostnames, if any."""
        for (ns, name), routes in sorted(self._routes_by_gateway().items()):
            if any(_hostname_rank(r, host) in (0, 1) for r in routes):
                gateway = self._view.peek(GROUP, GATEWAYS, ns, name)
                if gateway is not None:
                    return gateway
        return None

    def candidates(
        self, gateway: Obj, host: str, port: int, facts: RequestFacts
    ) -> Iterable[Candidate]:
        md = gateway.get("metadata") or {}
        gateway_ns, gateway_name = str(md.get("namespace", "default")), str(md.get("name"))
        listeners = (gateway.get("spec") or {}).get("listeners") or []
        for route in self._routes_by_gateway().get((gateway_ns, gateway_name), []):
            rank = _hostname_rank(route, host)
            if rank is None or not self._attaches(gateway, listeners, route, host, port):
                continue
            rmd = route.get("metadata") or {}
            tie = (str(rmd.get("creationTimestamp", "")), rmd.get("namespace"), rmd.get("name"))
            for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
                for match in rule.get("matches") or [{}]:
                    if match_holds(match, facts):
                        yield Candidate((rank, precedence(match), *tie, index), route, index, match)

    def _attaches(
        self, gateway: Obj, listeners: list[Obj], route: Obj, host: str, port: int
    ) -> bool:
        md = gateway.get("metadata") or {}
        route_ns = str((route.get("metadata") or {}).get("namespace", "default"))
        for parent in (route.get("spec") or {}).get("parentRefs") or []:
            if str(parent.get("name")) != md.get("name"):
                continue
            if str(parent.get("namespace") or route_ns) != md.get("namespace"):
                continue
            for listener in listeners:
                if parent.get("sectionName") and parent["sectionName"] != listener.get("name"):
                    continue
                listener_port = int(listener.get("port", 80))
                if listener_port != port or int(parent.get("port") or port) != port:
                    continue
                hostname = str(listener.get("hostname") or "*").lower()
                if not host_matches(hostname, host):
                    continue
                if _listener_admits(gateway, listener, route_ns, self._namespace_labels):
                    return True
        return False

    def _namespace_labels(self, namespace: str) -> Obj:
        found = self._view.peek("", "namespaces", None, namespace) or {}
        return dict((found.get("metadata") or {}).get("labels") or {})

    def plan(self, gateway: Obj, host: str, port: int, facts: RequestFacts) -> RoutePlan | None:
        """The plan of the highest-precedence matching rule; None: no route (Envoy's 404)."""
        found = min(
            self.candidates(gateway, host, port, facts), key=lambda c: c.order, default=None
        )
        if found is None:
            return None
        plan = plan_rule(found.route, found.index, found.match, facts)
        plan.via = gateway_peer(gateway)
        return plan


def gateway_peer(gateway: Obj) -> Peer:
    """The Gateway's proxy as Istio names its workload: ``<name>-<class>`` in its namespace."""
    md, spec = gateway.get("metadata") or {}, gateway.get("spec") or {}
    workload = f"{md.get('name')}-{spec.get('gatewayClassName')}"
    return Peer(workload=workload, namespace=str(md.get("namespace")), app=workload)
