"""The Grafana dashboard: valid JSON of the expected shape, every PromQL expression names only
metrics the worker exports (worker/metrics.py) or Istio's, and every expression is accepted by a
real Prometheus (the sandbox's) once the template variables are filled in."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.deploy._support import DEPLOY
from tests.ports import free_port

DASHBOARD = DEPLOY / "grafana" / "coalmine-dashboard.json"

ISTIO_METRICS = {
    "istio_requests_total",
    "istio_request_duration_milliseconds_bucket",
    "istio_request_duration_milliseconds_sum",
    "istio_request_duration_milliseconds_count",
}
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def worker_metric_names() -> set[str]:
    """The sample names the worker's registry exposes (counters with ``_total``, histograms with
    ``_bucket``/``_sum``/``_count``)."""
    from worker.metrics import RolloutMetrics

    names = set()
    for family in RolloutMetrics().registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana ``label_values`` query) reads."""
    labels_query = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)?.*\)\s*", expr, re.S)
    if labels_query:
        return {labels_query.group(1)} if labels_query.group(1) else set()
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text
    )  # label lists
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        word = match.group()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        if re.fullmatch(r"\d", text[match.start() - 1 : match.start()] or " "):
            continue  # part of a number such as 1e3
        names.add(word)
    return names


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def test_metric_name_extraction():
    assert metric_names(
        'sum by (le) (rate(a_bucket{x="y", z=~"$v"}[5m])) / ignoring(q) b_total offset 5m'
    ) == {"a_bucket", "b_total"}
    assert metric_names('label_values(coalmine_canary_weight{namespace=~"$n"}, name)') == {
        "coalmine_canary_weight"
    }
    assert metric_names("histogram_quantile(0.99, sum(rate(x[$__rate_interval]))) > 1e3") == {"x"}


def test_dashboard_shape():
    dashboard = load()
    assert dashboard["uid"] == "coalmine-canary"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "target", "primary", "canary"} <= variables.keys()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_expression_reads_only_known_metrics():
    known = worker_metric_names() | ISTIO_METRICS
    used: set[str] = set()
    for expr in expressions(load()):
        names = metric_names(expr)
        assert names, expr
        assert names <= known, f"unknown metric {names - known} in {expr}"
        used |= names
    # The dashboard charts the worker's whole set beside Istio's request metrics.
    assert {n for n in known if n.startswith("coalmine_")} - used <= {
        "coalmine_canary_total",
        "coalmine_canary_duration_seconds_count",
        "coalmine_canary_duration_seconds_sum",
    } | {n for n in known if n.endswith("_created")}
    assert {"istio_requests_total", "istio_request_duration_milliseconds_bucket"} <= used


def test_worker_expressions_filter_by_namespace_and_target():
    for expr in expressions(load()):
        worker = "coalmine_" in expr or "flagger_" in expr
        if worker and "label_values" not in expr:
            assert 'namespace=~"$namespace"' in expr, expr
            assert 'name=~"$target"' in expr, expr
        if "istio_" in expr and "label_values" not in expr:
            assert "destination_workload_namespace" in expr, expr
            assert re.search(r'destination_workload=~"\$(primary|canary)"', expr), expr


def _fill(expr: str, values: dict[str, str] | None = None) -> str:
    """The expression with Grafana's variables replaced, as Grafana sends it."""
    values = values or {
        "namespace": ".*",
        "target": "podinfo",
        "primary": "podinfo-primary",
        "canary": "podinfo",
        "__rate_interval": "1m",
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


@pytest.mark.slow
def test_prometheus_accepts_every_expression(sandbox_cluster):
    for expr in expressions(load()):
        if expr.lstrip().startswith("label_values"):
            continue  # a Grafana function, not PromQL
        query = urllib.parse.urlencode({"query": _fill(expr)})
        url = f"{sandbox_cluster.prometheus_url}/api/v1/query?{query}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", (expr, body)


def _two_rollouts(metrics) -> None:
    """What the worker's interceptor sees of two short rollouts of podinfo.test: the first
    promoted after two steps and one failed check, the second rolled back."""
    from workflows.activity_api import ActivityName as Name
    from workflows.activity_api import CanaryRef, EventInput, MetricCheckInput, SetWeightsInput
    from workflows.model import CheckOutcome, MetricResult, Phase
    from workflows.spec import MetricSpec

    ref = CanaryRef(namespace="test", name="podinfo", target="podinfo", service="podinfo")
    check = MetricCheckInput(
        ref=ref,
        metric=MetricSpec.model_validate(
            {"name": "request-success-rate", "thresholdRange": {"min": 99}}
        ),
    )

    def weights(primary: int, canary: int, run: str) -> None:
        step = SetWeightsInput(ref=ref, primary=primary, canary=canary)
        metrics.observe(Name.SET_WEIGHTS, step, None, run)

    def checked(value: float, outcome: CheckOutcome, run: str) -> None:
        result = MetricResult(
            name="request-success-rate", value=value, min=99, outcome=outcome, message=""
        )
        metrics.observe(Name.CHECK_METRIC, check, result, run)

    def ended(reason: str, phase: Phase, run: str) -> None:
        event = EventInput(ref=ref, reason=reason, message=reason, phase=phase)
        metrics.observe(Name.RECORD_EVENT, event, None, run)

    weights(90, 10, "run-1")
    checked(99.5, CheckOutcome.OK, "run-1")
    weights(80, 20, "run-1")
    checked(97.0, CheckOutcome.BREACH, "run-1")
    weights(100, 0, "run-1")
    ended("Promoted", Phase.SUCCEEDED, "run-1")
    weights(90, 10, "run-2")
    checked(60.0, CheckOutcome.BREACH, "run-2")
    weights(100, 0, "run-2")
    ended("Failed", Phase.FAILED, "run-2")


@pytest.mark.slow
async def test_worker_panels_show_the_worker_series(tmp_path):
    """The worker's registry, fed two rollouts and scraped by a real Prometheus: every worker
    expression of the dashboard (its labels, selectors and variables) finds series."""
    import asyncio

    from sandbox.prometheus import PrometheusServer, query
    from worker.metrics import RolloutMetrics

    metrics = RolloutMetrics()
    _two_rollouts(metrics)
    server = metrics.serve(port=free_port(), address="127.0.0.1")
    prometheus = PrometheusServer(
        state_dir=tmp_path, port=free_port(), mesh_target=f"127.0.0.1:{server.server_port}"
    )
    await prometheus.start()
    try:
        await prometheus.wait_ready()
        await asyncio.sleep(3)  # rate() and increase() need two samples
        values = {"namespace": "test", "target": "podinfo", "__rate_interval": "10s"}
        for expr in expressions(load()):
            if "coalmine_" not in expr and "flagger_" not in expr:
                continue
            if expr.lstrip().startswith("label_values"):
                metric, label = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", expr).groups()
                promql = f"count by ({label}) ({_fill(metric, values)})"
                found = await asyncio.to_thread(query, prometheus.url, promql)
                expected = {"namespace": "test", "name": "podinfo"}[label]
                assert {s["metric"][label] for s in found} == {expected}, expr
                continue
            found = await asyncio.to_thread(query, prometheus.url, _fill(expr, values))
            assert found, f"no series for {expr}"
        status = await asyncio.to_thread(
            query, prometheus.url, _fill(expressions(load())[0], values)
        )
        assert status[0]["value"][1] == "2"  # the Status panel: the last rollout Failed
    finally:
        await prometheus.stop()
        server.shutdown()
        server.server_close()


# Istio's standard metric labels (docs: "Istio Standard Metrics"), plus a histogram's `le`.
ISTIO_LABELS = {
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
    "source_version", "source_cluster", "destination_workload", "destination_workload_namespace",
    "destination_principal", "destination_app", "destination_version", "destination_service",
    "destination_service_name", "destination_service_namespace", "destination_cluster",
    "request_protocol", "response_code", "response_flags", "connection_security_policy",
    "grpc_response_status", "le",
}  # fmt: skip


def test_istio_expressions_use_istios_labels():
    for expr in expressions(load()):
        if "istio_" not in expr:
            continue
        matchers = re.findall(r"\{([^}]*)\}", expr)
        labels = {m for block in matchers for m in re.findall(r"(\w+)\s*[!=]~?", block)}
        labels |= {
            label.strip()
            for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
            for label in group.split(",")
        }
        assert labels <= ISTIO_LABELS, (labels - ISTIO_LABELS, expr)
        if "label_values" not in expr:
            assert 'reporter="destination"' in expr, expr


def test_the_deployment_strategy_is_charted():
    """Rollouts by strategy (issue 13): Flagger's deployment_strategy label, promotions and
    rollbacks apart, filtered like every worker panel."""
    panels = {panel["title"]: panel for panel in load()["panels"]}
    targets = panels["Rollouts by strategy"]["targets"]
    exprs = [target["expr"] for target in targets]
    assert all("by (deployment_strategy)" in expr for expr in exprs)
    assert any("flagger_canary_successes_total" in expr for expr in exprs)
    assert any("flagger_canary_failures_total" in expr for expr in exprs)
    assert all("{{deployment_strategy}}" in target["legendFormat"] for target in targets)
