"""The worker's metrics: what each observed activity call does to Coalmine's series and to
Flagger's (served over HTTP after real rollouts in tests/workflows/test_flagger_metrics.py)."""

from __future__ import annotations

import socket

import httpx

from worker.metrics import RolloutMetrics
from workflows.activity_api import (
    ActivityName,
    AdvanceInput,
    CanaryRef,
    EventInput,
    MetricCheckInput,
    SetWeightsInput,
    StepAnalysis,
    StepAnalysisInput,
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


def test_flaggers_status_follows_the_phase_as_flagger_sets_it() -> None:
    # Flagger's SetStatus: 0 only while Progressing, 2 once Failed, 1 for any other phase
    # (Initialized, Waiting, WaitingPromotion, Promoting, Finalising, Succeeded).
    metrics = RolloutMetrics()
    value = metrics.registry.get_sample_value
    target = {"name": "podinfo", "namespace": "test"}
    for phase, status in [
        (Phase.INITIALIZED, 1),
        (Phase.PROGRESSING, 0),
        (Phase.WAITING_PROMOTION, 1),
        (Phase.PROGRESSING, 0),
        (Phase.PROMOTING, 1),
    ]:
        metrics.observe(ActivityName.RECORD_EVENT, _event("Progress", phase), None, "r1")
        assert value("flagger_canary_status", target) == status, phase


def test_a_failing_step_counts_once_and_flagger_labels_by_target() -> None:
    ref = REF.model_copy(update={"name": "web-canary", "target": "web"})
    metrics = RolloutMetrics()
    value = metrics.registry.get_sample_value
    step = StepAnalysisInput(ref=ref, phase=Phase.PROGRESSING)
    result = StepAnalysis(
        metrics=[
            MetricResult(name="a", value=1.0, outcome=CheckOutcome.BREACH, message="m"),
            MetricResult(name="b", value=2.0, outcome=CheckOutcome.BREACH, message="m"),
        ]
    )
    metrics.observe(ActivityName.ANALYSE_STEP, step, result, "r1", elapsed=0.2)
    assert value("coalmine_canary_failed_checks", {"name": "web-canary", "namespace": "test"}) == 1
    # Flagger's series name the target, as Flagger labels by spec.targetRef.name.
    web = {"name": "web", "namespace": "test"}
    assert value("flagger_canary_metric_analysis", {**web, "metric": "b"}) == 2.0
    assert value("flagger_canary_duration_seconds_count", web) == 1
    assert value("flagger_canary_duration_seconds_bucket", {**web, "le": "0.25"}) == 1
    weights = AdvanceInput(weights=SetWeightsInput(ref=ref, primary=90, canary=10))
    metrics.observe(ActivityName.ADVANCE, weights, None, "r1")
    assert value("flagger_canary_weight", {"workload": "web-primary", "namespace": "test"}) == 90
    assert value("flagger_canary_weight", {"workload": "web", "namespace": "test"}) == 10
