"""Pure and in-process pieces of the data plane: hosts, routes, weights, workloads, metrics."""

from __future__ import annotations

import collections

import pytest

from sandbox.mesh import hosts
from sandbox.mesh.routes import (
    Destination,
    RequestFacts,
    WeightedPicker,
    match_route,
    parse_duration,
    plan_route,
)
from sandbox.workloads.base import image_tag, workload_of


def facts(
    path: str = "/", headers: dict[str, str] | None = None, method: str = "GET"
) -> RequestFacts:
    return RequestFacts(
        method=method,
        path=path,
        query={"q": "1"},
        headers=headers or {},
        authority="web.test",
        port=80,
        source_namespace="test",
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("web", "web.test.svc.cluster.local"),
        ("web.prod", "web.prod.svc.cluster.local"),
        ("web.prod.svc", "web.prod.svc.cluster.local"),
        ("web.prod.svc.cluster.local", "web.prod.svc.cluster.local"),
        ("app.example.com", "app.example.com"),
        ("web.nowhere", "web.nowhere"),
        ("*.example.com", "*.example.com"),
    ],
)
def test_qualify_host_forms(host, expected):
    assert hosts.qualify(host, namespace="test", namespace_exists=lambda n: n == "prod") == expected


def test_host_port_split_and_wildcards():
    assert hosts.split_host_port("Web.Test:9898") == ("web.test", 9898)
    assert hosts.split_host_port("web.test") == ("web.test", None)
    assert hosts.host_matches("*.example.com", "app.example.com")
    assert not hosts.host_matches("*.example.com", "example.org")
    assert hosts.service_of_fqdn("web.test.svc.cluster.local") == hosts.ServiceRef("test", "web")
    assert hosts.service_of_fqdn("app.example.com") is None


def test_match_blocks_are_or_and_fields_are_and():
    vs = {
        "metadata": {"name": "web", "namespace": "test"},
        "spec": {
            "http": [
                {
                    "match": [
                        {"headers": {"x-canary": {"exact": "yes"}}, "uri": {"prefix": "/api"}},
                        {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
                    ],
                    "route": [{"destination": {"host": "canary"}}],
                },
                {"route": [{"destination": {"host": "primary"}}]},
            ]
        },
    }
    assert match_route(vs, facts("/api/x", {"x-canary": "yes"}))[0] == 0
    assert match_route(vs, facts("/other", {"x-canary": "yes"}))[0] == 1
    assert match_route(vs, facts("/", {"cookie": "a=b;canary=always"}))[0] == 0
    assert match_route(vs, facts("/", {"cookie": "canary=never"}))[0] == 1


def test_route_plan_reads_weights_mirror_timeout_and_faults():
    route = {
        "route": [
            {"destination": {"host": "web-primary"}, "weight": 90},
            {"destination": {"host": "web-canary", "port": {"number": 9898}}, "weight": 10},
        ],
        "mirror": {"host": "shadow.other"},
        "mirrorPercentage": {"value": 25.0},
        "timeout": "1.5s",
        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 5}}},
    }
    vs = {"metadata": {"name": "web", "namespace": "test"}, "spec": {"http": [route]}}
    plan = plan_route(vs, 0, route, None, lambda h: f"{h}!")
    assert [(d.host, d.port, d.weight) for d in plan.destinations] == [
        ("web-primary!", None, 90),
        ("web-canary!", 9898, 10),
    ]
    assert plan.mirror is not None
    assert plan.mirror.host == "shadow.other!"
    assert plan.mirror_percent == 25.0
    assert plan.timeout == 1.5
    assert plan.abort == (503, 5.0)
    assert parse_duration("300ms") == pytest.approx(0.3)
    assert parse_duration("nonsense") is None


def test_weighted_picker_is_exact_and_skips_zero_weights():
    picker = WeightedPicker()
    split = [Destination("p", None, None, 90), Destination("c", None, None, 10)]
    picks = collections.Counter(picker.pick("r", split).host for _ in range(100))
    assert picks == {"p": 90, "c": 10}
    only = [Destination("p", None, None, 100), Destination("c", None, None, 0)]
    assert {picker.pick("r2", only).host for _ in range(20)} == {"p"}
    assert picker.pick("r3", [Destination("p", None, None, 0)]) is None


def test_workload_names_strip_the_pod_template_hash():
    pod_hash = "5d9f7c6b8"  # as the Deployment controller labels a ReplicaSet's pods
    pod = {
        "metadata": {
            "name": f"web-primary-{pod_hash}-abcde",
            "labels": {"pod-template-hash": pod_hash},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": f"web-primary-{pod_hash}", "controller": True}
            ],
        }
    }
    assert workload_of(pod) == "web-primary"
    assert image_tag("quay.io/stefanprodan/podinfo:1.4.1") == "1.4.1"
    assert image_tag("localhost:5000/podinfo") == "latest"


def test_metrics_exposition_is_cumulative_and_lean_mode_drops_labels():
    from sandbox.mesh.metrics import LEAN_LABELS, IstioMetrics, Peer

    full = IstioMetrics()
    lean = IstioMetrics(lean=True, source_reporter=False)
    for metrics in (full, lean):
        for ms in (0.4, 3.0, 300.0):
            metrics.record(
                source=Peer("tester", "test"),
                destination=Peer("web", "test", "web"),
                service_fqdn="web.test.svc.cluster.local",
                code=200,
                duration_ms=ms,
            )
    text = full.expose().decode()
    assert len(full) == 2
    assert 'reporter="source"' in text
    buckets = [
        line
        for line in text.splitlines()
        if line.startswith('istio_request_duration_milliseconds_bucket{reporter="destination"')
    ]
    values = {line.split('le="')[1].split('"')[0]: int(line.rsplit(" ", 1)[1]) for line in buckets}
    assert (
        values["0.5"],
        values["1"],
        values["5"],
        values["250"],
        values["500"],
        values["+Inf"],
    ) == (1, 1, 2, 2, 3, 3)
    assert "destination_principal" in text

    lean_text = lean.expose().decode()
    assert len(lean) == 1
    assert 'reporter="source"' not in lean_text
    assert "destination_principal" not in lean_text
    first = next(
        line for line in lean_text.splitlines() if line.startswith("istio_requests_total{")
    )
    assert [
        pair.split("=")[0] for pair in first[first.index("{") + 1 : first.index("}")].split(",")
    ] == list(LEAN_LABELS)
    assert first.endswith(" 3")


# --- Gateway API: HTTPRoute matches, precedence, filters; pods as Prometheus finds them ----------


def test_httproute_path_matches_are_element_wise_and_typed():
    from sandbox.mesh.gateway import path_matches

    assert path_matches(None, "/anything")  # no path: PathPrefix /
    assert path_matches({"type": "PathPrefix", "value": "/api"}, "/api/users")
    assert path_matches({"type": "PathPrefix", "value": "/api/"}, "/api")
    assert not path_matches({"type": "PathPrefix", "value": "/api"}, "/apix")
    assert path_matches({"type": "Exact", "value": "/token"}, "/token")
    assert not path_matches({"type": "Exact", "value": "/token"}, "/token/validate")
    assert path_matches({"type": "RegularExpression", "value": "/v[0-9]+/.*"}, "/v2/x")


def test_httproute_match_needs_every_header_and_query_param():
    from sandbox.mesh.gateway import match_holds

    match = {
        "path": {"type": "PathPrefix", "value": "/"},
        "method": "GET",
        "headers": [
            {"name": "X-Canary", "value": "insider"},
            {"name": "user-agent", "type": "RegularExpression", "value": ".*Firefox.*"},
        ],
        "queryParams": [{"name": "q", "value": "1"}],
    }
    both = {"x-canary": "insider", "user-agent": "Mozilla Firefox/1"}
    assert match_holds(match, facts(headers=both))  # facts(): query q=1
    assert not match_holds(match, facts(headers={"x-canary": "insider"}))
    assert not match_holds(match, facts(headers=both, method="POST"))


def test_httproute_precedence_is_the_gateway_apis():
    from sandbox.mesh.gateway import precedence

    exact = {"path": {"type": "Exact", "value": "/a"}}
    long_prefix = {"path": {"type": "PathPrefix", "value": "/api/v1"}}
    short_prefix = {"path": {"type": "PathPrefix", "value": "/api"}}
    with_method = {"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}
    with_header = {"path": {"type": "PathPrefix", "value": "/api"}, "headers": [{"name": "x"}]}
    regex = {"path": {"type": "RegularExpression", "value": "/.*"}}
    ordered = sorted(
        [regex, short_prefix, with_header, with_method, long_prefix, exact], key=precedence
    )
    assert ordered == [exact, long_prefix, with_method, with_header, short_prefix, regex]


def test_httproute_rule_becomes_a_plan_with_weights_filters_and_timeout():
    from sandbox.mesh.gateway import plan_rule

    match = {"path": {"type": "PathPrefix", "value": "/api"}}
    rule = {
        "matches": [match],
        "filters": [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {
                    "set": [{"name": "x-a", "value": "1"}],
                    "remove": ["x-b"],
                },
            },
            {
                "type": "ResponseHeaderModifier",
                "responseHeaderModifier": {"add": [{"name": "x-c", "value": "2"}]},
            },
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}},
            },
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": "shadow", "port": 80}, "percent": 25},
            },
        ],
        "backendRefs": [
            {"name": "web-primary", "port": 9898, "weight": 90},
            {"name": "web-canary", "namespace": "other", "port": 9898, "weight": 10},
            {"group": "example.com", "kind": "Bucket", "name": "not-a-service"},
        ],
        "timeouts": {"request": "2s"},
    }
    route = {"metadata": {"name": "web", "namespace": "test"}, "spec": {"rules": [rule]}}
    plan = plan_rule(route, 0, match, facts("/api/users"))
    assert [(d.host, d.port, d.weight) for d in plan.destinations] == [
        ("web-primary.test.svc.cluster.local", 9898, 90),
        ("web-canary.other.svc.cluster.local", 9898, 10),
    ]
    assert plan.request_headers == {"set": {"x-a": "1"}, "remove": ["x-b"]}
    assert plan.response_headers == {"add": {"x-c": "2"}}
    assert plan.rewrite == ("/api", "/v2")
    assert plan.mirror is not None
    assert (plan.mirror.host, plan.mirror_percent) == ("shadow.test.svc.cluster.local", 25.0)
    assert plan.timeout == 2.0
    assert plan.key == "httproute:test/web#0"


def test_pods_are_presented_to_prometheus_as_kubernetes_discovery_does():
    from sandbox.prometheus import pod_target_groups

    pod = {
        "metadata": {
            "name": "podinfo-5d9f7c6b8-abcde",
            "namespace": "test",
            "labels": {"app": "podinfo", "pod-template-hash": "5d9f7c6b8"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9797"},
        },
        "spec": {
            "containers": [
                {
                    "name": "podinfod",
                    "ports": [
                        {"name": "http", "containerPort": 9898},
                        {"name": "http-metrics", "containerPort": 9797},
                    ],
                },
                {"name": "sidecar"},
            ]
        },
        "status": {"podIP": "10.0.1.7", "phase": "Running"},
    }
    pending = {"metadata": {"name": "no-ip", "namespace": "test"}, "spec": {}, "status": {}}
    groups = pod_target_groups([pod, pending])
    assert [g["targets"] for g in groups] == [["10.0.1.7:9898"], ["10.0.1.7:9797"], ["10.0.1.7"]]
    labels = groups[1]["labels"]
    meta = "__meta_kubernetes_"
    assert labels[meta + "namespace"] == "test"
    assert labels[meta + "pod_name"] == "podinfo-5d9f7c6b8-abcde"
    assert labels[meta + "pod_annotation_prometheus_io_scrape"] == "true"
    assert labels[meta + "pod_annotation_prometheus_io_port"] == "9797"
    assert labels[meta + "pod_label_pod_template_hash"] == "5d9f7c6b8"
    assert labels[meta + "pod_container_port_name"] == "http-metrics"
