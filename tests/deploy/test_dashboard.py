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
        if "coalmine_" in expr and "label_values" not in expr:
            assert 'namespace=~"$namespace"' in expr, expr
            assert 'name=~"$target"' in expr, expr
        if "istio_" in expr and "label_values" not in expr:
            assert "destination_workload_namespace" in expr, expr
            assert re.search(r'destination_workload=~"\$(primary|canary)"', expr), expr


def _fill(expr: str) -> str:
    values = {
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
