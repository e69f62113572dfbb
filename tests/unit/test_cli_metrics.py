"""The worker's metrics: what each observed activity call does to Flagger's metric set."""

from __future__ import annotations

import socket

import httpx

from worker.metrics import RolloutMetrics
from workflows.activity_api import (
    ActivityName,
    CanaryRef,
    EventInput,
    MetricCheckInput,
    SetWeightsInput,
)
from workflows.model import CheckOutcome, MetricResult, Phase
from workflows.spec import MetricSpec

REF = CanaryRef(namespace="test", name="podinfo", target="podinfo", service="podinfo")
LABELS = {"name": "podinfo", "namespace": "test"}


def _event(reason: str, phase: Phase, weight: int = 0) -> EventInput:
    return EventInput(ref=REF, reason=reason, message=reason, phase=phase, weight=weight)


def _check(value: float, outcome: CheckOutcome) -> tuple[MetricCheckInput, MetricResult]:
    arg = MetricCheckInput(ref=REF, metric=MetricSpec(name="request-success-rate", threshold=99))
    result = MetricResult(name="request-success-rate", value=value, outcome=outcome, message="m")
    return arg, result


def test_weights_checks_and_promotion() -> None:
    metrics = RolloutMetrics()
    value = metrics.registry.get_sample_value
    metrics.observe(ActivityName.RECORD_EVENT, _event("NewRevision", Phase.PROGRESSING), None, "r1")
    metrics.observe(
        ActivityName.SET_WEIGHTS, SetWeightsInput(ref=REF, primary=80, canary=20), None, "r1"
    )
    assert value("coalmine_canary_weight", LABELS) == 20
    assert value("coalmine_canary_primary_weight", LABELS) == 80
    assert value("coalmine_canary_status", LABELS) == 0
    assert value("coalmine_canary_phase", {**LABELS, "phase": "Progressing"}) == 1

    metrics.observe(ActivityName.CHECK_METRIC, *_check(97.5, CheckOutcome.BREACH), "r1")
    metrics.observe(ActivityName.CHECK_METRIC, *_check(99.9, CheckOutcome.OK), "r1")
    metric = {**LABELS, "metric": "request-success-rate"}
    assert value("coalmine_canary_metric_analysis", metric) == 99.9
    assert value("coalmine_canary_failed_checks", LABELS) == 1

    metrics.observe(ActivityName.RECORD_EVENT, _event("Promoted", Phase.FINALISING), None, "r1")
    metrics.observe(ActivityName.RECORD_EVENT, _event("Promoted", Phase.FINALISING), None, "r1")
    assert value("coalmine_canary_promotions_total", LABELS) == 1  # once per run
    assert value("coalmine_canary_status", LABELS) == 1
    assert value("coalmine_canary_phase", {**LABELS, "phase": "Succeeded"}) == 1
    assert value("coalmine_canary_duration_seconds_count", LABELS) == 1
    assert value("coalmine_canary_total", {"namespace": "test"}) == 1


def test_rollback_and_a_new_run_starts_fresh() -> None:
    metrics = RolloutMetrics()
    value = metrics.registry.get_sample_value
    metrics.observe(ActivityName.CHECK_METRIC, *_check(50, CheckOutcome.BREACH), "r1")
    metrics.observe(ActivityName.RECORD_EVENT, _event("Failed", Phase.PROGRESSING), None, "r1")
    assert value("coalmine_canary_rollbacks_total", LABELS) == 1
    assert value("coalmine_canary_status", LABELS) == 2
    metrics.observe(
        ActivityName.SET_WEIGHTS, SetWeightsInput(ref=REF, primary=90, canary=10), None, "r2"
    )
    assert value("coalmine_canary_status", LABELS) == 0
    assert value("coalmine_canary_failed_checks", LABELS) == 0


def test_endpoint_serves_the_registry() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = RolloutMetrics()
    metrics.observe(
        ActivityName.SET_WEIGHTS, SetWeightsInput(ref=REF, primary=70, canary=30), None, "r"
    )
    server = metrics.serve(port=port, address="127.0.0.1")
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
    assert 'coalmine_canary_weight{name="podinfo",namespace="test"} 30.0' in body
