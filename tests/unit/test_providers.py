"""The provider registry, the spec's reading of provider names and fields, and the Gateway API
and Kubernetes plugins' pure parts (rendering, queries). No cluster."""

from __future__ import annotations

from typing import Any

import pytest

from activities.analysis.templates import TemplateModel, render
from activities.errors import ConfigurationError, InvalidSpec
from activities.router import PROVIDERS, provider_for, resolve
from activities.router.gatewayapi import find_weights, render_http_route, route_matches
from tests.canaries import canary_doc
from workflows import providers
from workflows.activity_api import CanaryRef
from workflows.spec import Canary, SpecError, parse_canary

GATEWAY = [{"name": "gateway", "namespace": "istio-ingress"}]


def document(provider: str | None = None, **service: Any) -> dict[str, Any]:
    extra = {"provider": provider} if provider is not None else {}
    return canary_doc(
        service=service,
        analysis={"threshold": None},
        progress_deadline=None,
        **extra,
    )


def problems(doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        parse_canary(doc)
    return str(caught.value)


# --- one registry --------------------------------------------------------------------------


def test_the_registry_and_the_validators_names_agree() -> None:
    assert set(PROVIDERS) == set(providers.PROVIDERS)
    for name, plugin in PROVIDERS.items():
        assert plugin.name == name
        assert set(plugin.queries) == {"request-success-rate", "request-duration"}
        assert plugin.rbac, f"{name} declares no RBAC rule"


def test_unknown_provider_is_a_configuration_error_never_a_fallback() -> None:
    with pytest.raises(ConfigurationError, match="supported providers are gatewayapi:v1"):
        provider_for("linkerd")
    with pytest.raises(ConfigurationError):
        resolve("linkerd", "istio")


def test_the_canarys_provider_wins_over_the_default_and_none_is_the_default() -> None:
    assert resolve("kubernetes", "istio").name == "kubernetes"
    assert resolve(None, "gatewayapi").name == "gatewayapi:v1"
    assert provider_for("gatewayapi").name == "gatewayapi:v1"  # Flagger's bare prefix


def test_the_ref_carries_the_canarys_provider() -> None:
    canary = parse_canary(document("gatewayapi", gatewayRefs=GATEWAY))
    assert CanaryRef.of(canary).provider == "gatewayapi:v1"
    assert CanaryRef.of(parse_canary(document())).provider is None
    # A ref recorded before the field existed still reads (running rollouts replay).
    old = {"namespace": "test", "name": "podinfo", "target": "podinfo", "service": "podinfo"}
    assert CanaryRef.model_validate(old).provider is None


# --- the spec ------------------------------------------------------------------------------


def test_an_unknown_provider_is_refused_naming_the_known_ones() -> None:
    message = problems(document("linkerd"))
    assert "linkerd" in message
    assert "gatewayapi:v1, istio, kubernetes" in message


def test_gateway_refs_are_read_with_the_gateway_api_provider() -> None:
    canary = parse_canary(document("gatewayapi:v1", gatewayRefs=GATEWAY, backendTimeout="5s"))
    assert canary.spec.service.gateway_refs == GATEWAY


def test_gateway_refs_with_another_provider_are_refused_naming_the_owner() -> None:
    message = problems(document("istio", gatewayRefs=GATEWAY))
    assert "gatewayRefs belongs to the gatewayapi:v1 provider" in message


def test_the_gateway_api_provider_needs_gateway_refs() -> None:
    assert "needs service.gatewayRefs" in problems(document("gatewayapi:v1"))


def test_the_kubernetes_provider_is_blue_green_only() -> None:
    assert "Blue/Green only" in problems(document("kubernetes"))


# --- Gateway API rendering (Flagger's pkg/router/gateway_api.go) ----------------------------


def gateway_canary(**service: Any) -> Canary:
    return parse_canary(document("gatewayapi:v1", gatewayRefs=GATEWAY, **service))


def test_http_route_with_parent_refs_hosts_and_two_weighted_backends() -> None:
    route = render_http_route(gateway_canary(hosts=["app.example.com"]), 80, 20)
    spec = route["spec"]
    assert route["metadata"]["name"] == "podinfo"
    assert spec["parentRefs"] == GATEWAY
    assert spec["hostnames"] == ["app.example.com"]
    (rule,) = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "podinfo-primary", "port": 9898, "weight": 80},
        {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898, "weight": 20},
    ]
    found = find_weights(route, "podinfo")
    assert found is not None
    assert (found[0], found[1].primary, found[1].canary) == (0, 80, 20)


def test_matches_filters_and_timeouts_as_flagger_renders_them() -> None:
    canary = gateway_canary(
        match=[{"uri": {"prefix": "/api"}, "headers": {"x-user": {"exact": "qa"}}}],
        headers={"request": {"set": {"b": "2", "a": "1"}, "remove": ["x"]}},
        rewrite={"uri": "/", "authority": "internal"},
        timeout="30s",
        backendTimeout="10s",
    )
    (rule,) = render_http_route(canary)["spec"]["rules"]
    assert rule["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/api"},
            "headers": [{"name": "x-user", "type": "Exact", "value": "qa"}],
        }
    ]
    assert rule["filters"] == [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {
                "set": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}],
                "remove": ["x"],
            },
        },
        {
            "type": "URLRewrite",
            "urlRewrite": {
                "hostname": "internal",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"},
            },
        },
    ]
    assert rule["timeouts"] == {"request": "30s", "backendRequest": "10s"}


def test_a_match_gateway_api_cannot_express_is_invalid() -> None:
    with pytest.raises(InvalidSpec):
        route_matches([{"uri": {"suffix": ".png"}}])


# --- builtin queries -------------------------------------------------------------------------

MODEL = TemplateModel(
    name="podinfo", namespace="test", target="podinfo", service="podinfo", interval="1m"
)


def test_kubernetes_checks_read_the_apps_own_metrics_by_pod_name() -> None:
    query = " ".join(
        render(provider_for("kubernetes").queries["request-success-rate"], MODEL).split()
    )
    assert "http_request_duration_seconds_count{" in query
    assert 'kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"' in query
    duration = render(provider_for("kubernetes").queries["request-duration"], MODEL)
    assert "http_request_duration_seconds_bucket" in duration
    assert duration.strip().endswith("* 1000")  # Flagger reports it in milliseconds


def test_gateway_api_checks_are_the_http_observers_as_flaggers_factory_gives() -> None:
    # pkg/metrics/observers/factory.go: kubernetes and any gatewayapi prefix → HttpObserver.
    assert provider_for("gatewayapi:v1").queries == provider_for("kubernetes").queries
    assert provider_for("gatewayapi:v1").queries != provider_for("istio").queries


# --- Gateway API A/B testing (Flagger's gateway_api.go with analysis.match) ---------------------


def ab_canary(ab: list[dict[str, Any]], **service: Any) -> Canary:
    doc = document("gatewayapi:v1", gatewayRefs=GATEWAY, **service)
    doc["spec"]["analysis"].update(
        {"iterations": 5, "match": ab, "stepWeight": None, "maxWeight": None}
    )
    doc["spec"]["analysis"] = {k: v for k, v in doc["spec"]["analysis"].items() if v is not None}
    return parse_canary(doc)


def test_ab_testing_routes_the_matched_requests_by_a_rule_of_their_own() -> None:
    canary = ab_canary(
        [
            {"headers": {"x-canary": {"exact": "insider"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
        ],
        match=[{"uri": {"prefix": "/api"}}],
    )
    matched, everyone = render_http_route(canary, 0, 100)["spec"]["rules"]
    assert matched["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/api"},
            "headers": [{"name": "x-canary", "type": "Exact", "value": "insider"}],
        },
        {
            "path": {"type": "PathPrefix", "value": "/api"},
            "headers": [
                {
                    "name": "cookie",
                    "type": "RegularExpression",
                    "value": "^(.*?;)?(canary=always)(;.*)?$",
                }
            ],
        },
    ]
    assert [(b["name"], b["weight"]) for b in matched["backendRefs"]] == [
        ("podinfo-primary", 0),
        ("podinfo-canary", 100),
    ]
    # Everyone else: the service's own match, the primary only.
    assert everyone["matches"] == [{"path": {"type": "PathPrefix", "value": "/api"}}]
    assert [(b["name"], b["weight"]) for b in everyone["backendRefs"]] == [("podinfo-primary", 100)]
    found = find_weights(render_http_route(canary, 0, 100), "podinfo")
    assert found is not None
    assert (found[0], found[1].canary) == (0, 100)  # set_weights moves the matched rule


def test_ab_testing_is_accepted_for_gateway_api_and_what_it_cannot_route_is_refused() -> None:
    assert ab_canary([{"headers": {"x-canary": {"exact": "insider"}}}]).spec.analysis.match
    canary = ab_canary([{"sourceLabels": {"app": "frontend"}}])
    with pytest.raises(InvalidSpec, match="sourceLabels cannot be routed by Gateway API"):
        render_http_route(canary)
    doc = document("gatewayapi:v1", gatewayRefs=GATEWAY)
    doc["spec"]["analysis"]["mirror"] = True
    assert "analysis.mirror is not supported yet by Coalmine's gatewayapi:v1" in problems(doc)
