"""The Istio routes of each strategy, as Flagger's router shapes them (pure, no cluster)."""

from __future__ import annotations

from typing import Any

import yaml

from activities.router._istio_routes import merge_match, session_routes, with_mirror
from activities.router.istio import find_route, render_virtual_service
from workflows.spec import Canary, parse_canary

BASE = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis: {interval: 1m}
"""
PRIMARY = {"destination": {"host": "podinfo-primary"}, "weight": 100}
CANARY_0 = {"destination": {"host": "podinfo-canary"}, "weight": 0}


def _canary(service: dict[str, Any] | None = None, **analysis: Any) -> Canary:
    document = yaml.safe_load(BASE)
    document["spec"]["service"].update(service or {})
    document["spec"]["analysis"].update(analysis)
    return parse_canary(document)


def test_ab_testing_renders_the_matched_route_and_the_primary_route() -> None:
    match = [
        {"headers": {"x-canary": {"regex": ".*insider.*"}}},
        {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
    ]
    vs = render_virtual_service(_canary(iterations=10, match=match))
    assert vs["spec"]["http"] == [
        {"match": match, "route": [PRIMARY, CANARY_0]},
        {"route": [PRIMARY]},
    ]
    # The weights set during analysis are the matched route's.
    found = find_route(vs, "podinfo")
    assert found is not None
    assert found[0] == 0


def test_ab_testing_merges_the_service_match_as_flagger() -> None:
    service_match = [{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/v2"}}]
    match = [{"headers": {"x-canary": {"exact": "insider"}}}]
    canary = _canary({"match": service_match}, iterations=3, match=match)
    routes = render_virtual_service(canary)["spec"]["http"]
    headers = {"x-canary": {"exact": "insider"}}
    assert routes[0]["match"] == [
        {"uri": {"prefix": "/api"}, "headers": headers},
        {"uri": {"prefix": "/v2"}, "headers": headers},
    ]
    assert routes[1]["match"] == service_match
    assert routes[1]["route"] == [PRIMARY]


def test_merge_match_keeps_source_labels() -> None:
    merged = merge_match([{"sourceLabels": {"app": "frontend"}}], [{"uri": {"exact": "/"}}])
    assert merged == [{"uri": {"exact": "/"}, "sourceLabels": {"app": "frontend"}}]
    assert merge_match([{"headers": {}}], []) == [{"headers": {}}]


def test_blue_green_and_canary_keep_one_weighted_route() -> None:
    for canary in (_canary(iterations=5), _canary(stepWeight=10, mirror=True)):
        assert render_virtual_service(canary)["spec"]["http"] == [{"route": [PRIMARY, CANARY_0]}]


def test_mirror_on_and_off() -> None:
    route = {"route": [PRIMARY, CANARY_0]}
    mirrored = with_mirror(route, "podinfo-canary", mirrored=True, mirror_weight=0)
    assert mirrored == {**route, "mirror": {"host": "podinfo-canary"}}
    partly = with_mirror(route, "podinfo-canary", mirrored=True, mirror_weight=25)
    assert partly["mirrorPercentage"] == {"value": 25.0}
    assert with_mirror(partly, "podinfo-canary", mirrored=False, mirror_weight=0) == route


def test_a_delegate_virtual_service_has_no_hosts_or_gateways() -> None:
    vs = render_virtual_service(_canary({"delegation": True}, stepWeight=10))
    assert (vs["spec"]["hosts"], vs["spec"]["gateways"]) == ([], [])


def test_session_affinity_routes_as_flaggers_set_routes() -> None:
    weighted = {"route": [{**PRIMARY, "weight": 90}, {**CANARY_0, "weight": 10}]}
    sticky, routed = session_routes(
        weighted,
        service_match=[],
        canary_host="podinfo-canary",
        canary_weight=10,
        cookie="flagger-cookie=abc",
        previous_cookie=None,
        max_age=21600,
    )
    assert sticky == {
        "match": [{"headers": {"Cookie": {"regex": ".*flagger-cookie.*abc.*"}}}],
        "name": "sticky-route",
        "route": [{**PRIMARY, "weight": 0}, {**CANARY_0, "weight": 100}],
    }
    assert routed["route"][1]["headers"] == {
        "response": {"add": {"Set-Cookie": "flagger-cookie=abc; Max-Age=21600"}}
    }
    # Back at 0 (promoted or rolled back): the old cookie goes to the primary and expires.
    sticky, routed = session_routes(
        {"route": [PRIMARY, CANARY_0]},
        service_match=[],
        canary_host="podinfo-canary",
        canary_weight=0,
        cookie=None,
        previous_cookie="flagger-cookie=abc",
        max_age=21600,
    )
    assert sticky["route"] == [PRIMARY, CANARY_0]
    assert sticky["headers"] == {
        "response": {"add": {"Set-Cookie": "flagger-cookie=abc; Max-Age=-1"}}
    }
    assert routed == {"route": [PRIMARY, CANARY_0]}
