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
