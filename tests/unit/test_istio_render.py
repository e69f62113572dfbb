"""Rendering the Istio VirtualService and DestinationRules from a Canary (pure, no cluster)."""

from __future__ import annotations

import pytest

from activities.errors import ConfigurationError
from activities.router import IstioRouter, router_for
from activities.router.istio import (
    find_route,
    render_destination_rule,
    render_virtual_service,
)
from tests import canaries
from workflows.spec import Canary


def canary(**service) -> Canary:
    return canaries.canary(service=service, progress_deadline=None)


def test_virtual_service_of_the_article() -> None:
    vs = render_virtual_service(
        canary(
            gateways=["public-gateway.istio-system.svc.cluster.local"],
            hosts=["app.istio.example.com"],
        )
    )
    assert vs["apiVersion"] == "networking.istio.io/v1beta1"
    assert vs["kind"] == "VirtualService"
    assert vs["metadata"]["name"] == "podinfo"
    assert vs["metadata"]["namespace"] == "test"
    assert vs["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "coalmine"
    assert vs["spec"]["hosts"] == ["podinfo", "app.istio.example.com"]
    assert vs["spec"]["gateways"] == ["public-gateway.istio-system.svc.cluster.local"]
    assert vs["spec"]["http"] == [
        {
            "route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 100},
                {"destination": {"host": "podinfo-canary"}, "weight": 0},
            ]
        }
    ]


def test_mesh_gateway_alone_without_gateways_and_no_duplicates() -> None:
    vs = render_virtual_service(canary(hosts=["podinfo"], gateways=["mesh"]))
    assert vs["spec"]["hosts"] == ["podinfo"]
    assert vs["spec"]["gateways"] == ["mesh"]
    assert render_virtual_service(canary())["spec"]["gateways"] == ["mesh"]
    assert render_virtual_service(canary(hosts=["*"]))["spec"]["hosts"] == ["*"]


def test_route_carries_match_rewrite_retries_timeout_headers_and_cors() -> None:
    spec = {
        "match": [{"uri": {"prefix": "/"}}],
        "rewrite": {"uri": "/"},
        "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error"},
        "timeout": "5s",
        "headers": {"request": {"add": {"x-some-header": "value"}}},
        "corsPolicy": {"allowOrigins": [{"exact": "example.com"}], "maxAge": "24h"},
    }
    route = render_virtual_service(canary(**spec), 80, 20)["spec"]["http"][0]
    for field, value in spec.items():
        assert route[field] == value, field
    assert [d["weight"] for d in route["route"]] == [80, 20]


def test_named_service_and_port_discovery() -> None:
    # As Flagger's makeDestination: with portDiscovery the Services have several ports, so a
    # gateway (or a root VirtualService) is told which one; the mesh needs no port.
    gateway = ["public-gateway.istio-system.svc.cluster.local"]
    vs = render_virtual_service(canary(name="frontend", portDiscovery=True, gateways=gateway))
    assert vs["metadata"]["name"] == "frontend"
    assert vs["spec"]["http"][0]["route"][1] == {
        "destination": {"host": "frontend-canary", "port": {"number": 9898}},
        "weight": 0,
    }
    delegate = render_virtual_service(canary(portDiscovery=True, delegation=True))
    assert delegate["spec"]["http"][0]["route"][0]["destination"]["port"] == {"number": 9898}
    for service in ({"portDiscovery": True}, {"portDiscovery": True, "gateways": ["mesh"]}):
        mesh = render_virtual_service(canary(**service))
        assert mesh["spec"]["http"][0]["route"][0]["destination"] == {"host": "podinfo-primary"}
    assert (
        "port"
        not in render_virtual_service(canary(gateways=gateway))["spec"]["http"][0]["route"][0][
            "destination"
        ]
    )


@pytest.mark.parametrize("protocol", ["tcp", "TCP"])
def test_a_tcp_service_gets_a_weighted_tcp_route(protocol: str) -> None:
    tcp = canary(
        appProtocol=protocol,
        match=[{"port": 9898}, {"uri": {"prefix": "/"}}],
        retries={"attempts": 3},
        timeout="5s",
    )
    vs = render_virtual_service(tcp, 80, 20)
    # Flagger's isTcp: no HTTP route, one TCP route matching the ports of service.match
    # (canaryToL4Match), none of the HTTP fields.
    assert "http" not in vs["spec"]
    assert vs["spec"]["tcp"] == [
        {
            "match": [{"port": 9898}],
            "route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 80},
                {"destination": {"host": "podinfo-canary"}, "weight": 20},
            ],
        }
    ]
    assert vs["spec"]["gateways"] == ["mesh"]
    index, weights = find_route(vs, "podinfo", "tcp")
    assert (index, weights.primary, weights.canary) == (0, 80, 20)
    assert find_route(vs, "podinfo") is None
    plain = render_virtual_service(canary(appProtocol="tcp"))["spec"]["tcp"]
    assert "match" not in plain[0]
    assert "tcp" not in render_virtual_service(canary(appProtocol="http"))["spec"]


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"iterations": 5, "match": [{"headers": {"x-canary": {"exact": "1"}}}]}, "match"),
        ({"iterations": 5, "mirror": True}, "mirror"),
        ({"sessionAffinity": {"cookieName": "flagger-cookie"}}, "sessionAffinity"),
    ],
)
def test_http_only_strategies_are_refused_for_a_tcp_service(analysis: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"analysis.{field} needs HTTP routes.*appProtocol"):
        canaries.canary(service={"appProtocol": "tcp"}, analysis=analysis)
    canaries.canary(service={"appProtocol": "http"}, analysis=analysis)


def test_destination_rules_carry_the_traffic_policy() -> None:
    policy = {"tls": {"mode": "ISTIO_MUTUAL"}}
    rule = render_destination_rule(canary(trafficPolicy=policy), "podinfo-canary")
    assert rule["kind"] == "DestinationRule"
    assert rule["metadata"]["name"] == "podinfo-canary"
    assert rule["spec"] == {"host": "podinfo-canary", "trafficPolicy": policy}
    assert render_destination_rule(canary(), "podinfo-primary")["spec"] == {
        "host": "podinfo-primary"
    }


def test_apex_metadata_goes_on_the_virtual_service() -> None:
    vs = render_virtual_service(canary(apex={"labels": {"team": "a"}, "annotations": {"x": "y"}}))
    assert vs["metadata"]["labels"] == {"team": "a", "app.kubernetes.io/managed-by": "coalmine"}
    assert vs["metadata"]["annotations"]["x"] == "y"


def test_find_route_reads_the_weights_back() -> None:
    vs = render_virtual_service(canary(), 70, 30)
    index, weights = find_route(vs, "podinfo")
    assert index == 0
    assert (weights.primary, weights.canary) == (70, 30)
    assert find_route({"spec": {"http": []}}, "podinfo") is None


def test_rendering_is_deterministic() -> None:
    c = canary(hosts=["b", "a"], retries={"attempts": 1})
    assert render_virtual_service(c) == render_virtual_service(c)


def test_router_for_names_istio_and_refuses_unknown_providers() -> None:
    assert router_for("istio")(None).__class__ is IstioRouter
    with pytest.raises(ConfigurationError, match="unknown traffic router provider 'linkerd'"):
        router_for("linkerd")
    with pytest.raises(ConfigurationError) as raised:
        router_for("")
    assert raised.value.non_retryable
    assert raised.value.type == "ConfigurationError"
