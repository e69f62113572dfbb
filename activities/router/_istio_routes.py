"""The routes of a Canary's VirtualService for each strategy, as Flagger's Istio router
(``pkg/router/istio.go``: ``reconcileVirtualService``, ``SetRoutes``, ``mergeMatchConditions``,
``canaryToL4Match``) shapes them. Pure functions; `activities.router.istio` reads and writes.

- A TCP service (``service.appProtocol: tcp``, any case, Flagger's ``isTcp``): one ``tcp``
  route, weighted, matching only the ports of ``service.match`` (Istio's L4 match has no uri or
  headers); none of the HTTP route's fields, no A/B, mirroring or session affinity (the spec
  refuses those with tcp).

- A weighted canary, Blue/Green: one route to ``<svc>-primary`` / ``<svc>-canary``.
- A/B testing (``analysis.match``): two routes. The first, for the matched requests (each
  condition of ``analysis.match`` merged into each of ``service.match``), carries the weights;
  the second sends everybody else to the primary alone. Routing the matched users to the canary
  is setting the first route's weights to 0/100.
- Mirroring: the first route gets ``mirror: {host: <svc>-canary}`` (and ``mirrorPercentage``
  when ``mirrorWeight`` is set), so Envoy copies its requests to the canary and drops the
  canary's answers.
"""

from __future__ import annotations

import json
from typing import Any

from workflows.spec import Canary

Obj = dict[str, Any]


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def is_tcp(canary: Canary) -> bool:
    """Whether the Canary's routes are TCP routes (Flagger's isTcp)."""
    return (canary.spec.service.app_protocol or "").lower() == "tcp"


def l4_match(canary: Canary) -> list[Obj]:
    """``service.match`` as Istio L4 match attributes: the port of each condition that has one
    (Flagger's canaryToL4Match; a condition without a port matches every port either way)."""
    return [{"port": m["port"]} for m in canary.spec.service.match or [] if m.get("port")]


def merge_match(canary: list[Obj], defaults: list[Obj]) -> list[Obj]:
    """Flagger's mergeMatchConditions: each canary condition's headers and sourceLabels laid
    over a copy of each of ``service.match`` (the canary conditions alone when it is empty)."""
    if not defaults:
        return canary
    merged: list[Obj] = []
    for condition in canary:
        for default in defaults:
            item = _copy(default)
            for field in ("headers", "sourceLabels"):
                if condition.get(field) is not None:
                    item[field] = _copy(condition[field])
            merged.append(item)
    return merged


def analysis_match(canary: Canary) -> list[Obj]:
    """``analysis.match`` as Istio's HTTPMatchRequests (camelCase, unset fields left out)."""
    return [
        m.model_dump(by_alias=True, exclude_none=True, mode="json")
        for m in canary.spec.analysis.match
    ]


def with_mirror(route: Obj, canary_host: str, *, mirrored: bool, mirror_weight: int) -> Obj:
    """``route`` mirroring to ``canary_host`` (or not: any mirror removed)."""
    route = {k: v for k, v in route.items() if k not in ("mirror", "mirrorPercentage")}
    if mirrored:
        route["mirror"] = {"host": canary_host}
        if mirror_weight > 0:
            route["mirrorPercentage"] = {"value": float(mirror_weight)}
    return route


def ab_routes(canary: Canary, weighted: Obj, primary_only: Obj) -> list[Obj]:
    """The two A/B routes: the matched requests weighted, everybody else to the primary."""
    service_match = _copy(canary.spec.service.match or [])
    matched = {**weighted, "match": merge_match(analysis_match(canary), service_match)}
    rest = {k: v for k, v in primary_only.items() if k != "match"}
    if service_match:
        rest = {"match": service_match, **rest}
    # Field order as Istio prints it: match first.
    return [_match_first(matched), _match_first(rest)]


def _match_first(route: Obj) -> Obj:
    if "match" not in route:
        return route
    return {"match": route["match"], **{k: v for k, v in route.items() if k != "match"}}


STICKY_ROUTE = "sticky-route"
"""Flagger's name for the session-affinity route (first, ahead of the weighted route)."""
STICKY_PRIMARY_ROUTE = "sticky-primary-route"
"""The route that keeps the primary cookie's holders on the primary (``primaryCookieName``)."""
STICKY_ROUTES = frozenset({STICKY_ROUTE, STICKY_PRIMARY_ROUTE})


def cookie_match(cookie: str) -> Obj:
    """Flagger's match of a ``name=value`` session cookie in the Cookie header."""
    name, _, value = cookie.partition("=")
    return {"headers": {"Cookie": {"regex": f".*{name}.*{value}.*"}}}


def session_routes(
    weighted: Obj,
    *,
    service_match: list[Obj],
    canary_host: str,
    canary_weight: int,
    cookie: str | None,
    previous_cookie: str | None,
    max_age: int,
    primary_cookie: str | None = None,
    primary_max_age: int | None = None,
) -> list[Obj]:
    """Flagger's SetRoutes with ``sessionAffinity``: [sticky route, weighted route].

    While the canary takes a share, its answers set ``cookie`` (``Max-Age`` as the spec says)
    and the sticky route sends requests carrying it to the canary alone. Once the canary is back
    at 0, the sticky route catches the previous run's cookie, sends it to the primary and
    expires it (``Max-Age=-1``). With ``primary_cookie`` (``primaryCookieName``), while the
    canary takes a share the primary's answers set that cookie too (``primary_max_age``) and a
    second sticky route sends its holders to the primary alone: [sticky route, sticky primary
    route, weighted route], as Flagger's getSessionAffinityRouteRules.
    """
    weighted = _copy(weighted)
    sticky: Obj = {"name": STICKY_ROUTE, **_copy(weighted)}
    if canary_weight and cookie:
        for destination in weighted["route"]:
            if destination["destination"]["host"] == canary_host:
                headers = destination.setdefault("headers", {}).setdefault("response", {})
                headers["add"] = {"Set-Cookie": f"{cookie}; Max-Age={max_age}"}
        sticky["match"] = merge_match([cookie_match(cookie)], service_match)
        sticky["route"] = [_copy(weighted["route"][0]), _copy(weighted["route"][1])]
        sticky["route"][0]["weight"], sticky["route"][1]["weight"] = 0, 100
        for destination in sticky["route"]:
            destination.pop("headers", None)
        if primary_cookie:
            held = _primary_sticky_route(weighted, primary_cookie, service_match)
            set_cookie = {"Set-Cookie": f"{primary_cookie}; Max-Age={primary_max_age}"}
            for destination in weighted["route"]:
                if destination["destination"]["host"] != canary_host:
                    headers = destination.setdefault("headers", {}).setdefault("response", {})
                    headers["add"] = dict(set_cookie)
            return [_match_first(sticky), _match_first(held), weighted]
    elif previous_cookie:
        sticky["match"] = merge_match([cookie_match(previous_cookie)], service_match)
        response = sticky.setdefault("headers", {}).setdefault("response", {})
        response.setdefault("add", {})["Set-Cookie"] = f"{previous_cookie}; Max-Age=-1"
    return [_match_first(sticky), weighted]


def _primary_sticky_route(weighted: Obj, cookie: str, service_match: list[Obj]) -> Obj:
    """The weighted route pinned to the primary for requests carrying the primary's cookie."""
    held: Obj = {"name": STICKY_PRIMARY_ROUTE, **_copy(weighted)}
    held["match"] = merge_match([cookie_match(cookie)], service_match)
    held["route"] = [_copy(weighted["route"][0]), _copy(weighted["route"][1])]
    held["route"][0]["weight"], held["route"][1]["weight"] = 100, 0
    for destination in held["route"]:
        destination.pop("headers", None)
    return held
