"""The rollout's pure decisions, without Temporal."""

from __future__ import annotations

from typing import Any

import pytest

from workflows import decisions
from workflows.model import CheckOutcome, MetricResult, Phase, RolloutStatus
from workflows.spec import AnalysisSpec, MetricSpec


def analysis(**fields: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate({"interval": "30s", **fields})


def status(phase: Phase = Phase.PROGRESSING, **fields: Any) -> RolloutStatus:
    return RolloutStatus(name="podinfo", namespace="test", phase=phase, **fields)


def result(name: str, outcome: CheckOutcome) -> MetricResult:
    return MetricResult(name=name, outcome=outcome, message=f"{name} {outcome}")


@pytest.mark.parametrize(
    ("fields", "current", "expected"),
    [
        ({"stepWeight": 10, "maxWeight": 50}, 0, 10),
        ({"stepWeight": 10, "maxWeight": 50}, 40, 50),
        ({"stepWeight": 20, "maxWeight": 50}, 40, 50),  # capped at maxWeight
        ({"stepWeight": 5}, 95, 100),  # maxWeight defaults to 100
        ({"stepWeights": [1, 5, 20, 50]}, 0, 1),
        ({"stepWeights": [1, 5, 20, 50]}, 5, 20),
        ({"stepWeights": [1, 5, 20, 50]}, 10, 20),  # after a restart at an odd weight
        ({"stepWeights": [1, 5, 20, 50]}, 50, 50),
    ],
)
def test_next_weight(fields: dict[str, Any], current: int, expected: int) -> None:
    assert decisions.next_weight(analysis(**fields), current) == expected


def test_max_weight_and_step_count() -> None:
    assert decisions.max_weight(analysis(stepWeight=5, maxWeight=50)) == 50
    assert decisions.max_weight(analysis(stepWeights=[10, 60])) == 60
    assert decisions.step_count(analysis(stepWeight=5, maxWeight=50)) == 10
    assert decisions.step_count(analysis(stepWeight=30, maxWeight=100)) == 4
    assert decisions.step_count(analysis(stepWeights=[1, 5, 20, 50])) == 4


@pytest.mark.parametrize(
    ("canary", "step", "expected"),
    [
        (50, None, [(100, 0)]),
        (50, 20, [(70, 30), (90, 10), (100, 0)]),
        (50, 25, [(75, 25), (100, 0)]),
        (0, 20, [(100, 0)]),  # nothing to move: converge anyway
        (100, 50, [(50, 50), (100, 0)]),
    ],
)
def test_promotion_weights(canary: int, step: int | None, expected: list[tuple[int, int]]) -> None:
    assert decisions.promotion_weights(canary, step) == expected


def test_failed_metrics_and_step_verdict() -> None:
    ok = result("request-success-rate", CheckOutcome.OK)
    breach = result("request-duration", CheckOutcome.BREACH)
    no_data = result("custom", CheckOutcome.NO_DATA)
    assert decisions.failed_metrics([ok, breach, no_data]) == [breach, no_data]
    assert not decisions.step_failed(webhook_failures=0, metric_results=[ok])
    assert decisions.step_failed(webhook_failures=0, metric_results=[ok, no_data])
    assert decisions.step_failed(webhook_failures=1, metric_results=[])


@pytest.mark.parametrize(
    ("failed", "threshold", "reached"),
    [(0, 1, False), (1, 1, True), (9, 10, False), (10, 10, True), (11, 10, True)],
)
def test_threshold_reached(failed: int, threshold: int, reached: bool) -> None:
    assert decisions.threshold_reached(failed, threshold) is reached


@pytest.mark.parametrize(
    ("metric", "bounds", "summary"),
    [
        (
            {"name": "request-success-rate", "thresholdRange": {"min": 99}},
            (99, None),
            "check request-success-rate ≥ 99",
        ),
        (
            {"name": "request-duration", "thresholdRange": {"max": 500}},
            (None, 500),
            "check request-duration ≤ 500",
        ),
        (
            {"name": "request-success-rate", "threshold": 99},
            (99, None),
            "check request-success-rate ≥ 99",
        ),
        (
            {"name": "request-duration", "threshold": 500},
            (None, 500),
            "check request-duration ≤ 500",
        ),
        (
            {"name": "errors", "thresholdRange": {"min": 0, "max": 1.5}, "query": "sum(x)"},
            (0, 1.5),
            "check errors ≥ 0 ≤ 1.5",
        ),
    ],
)
def test_metric_bounds_and_summary(
    metric: dict[str, Any], bounds: tuple[float | None, float | None], summary: str
) -> None:
    spec = MetricSpec.model_validate(metric)
    assert decisions.metric_bounds(spec) == bounds
    assert decisions.metric_summary(spec) == summary


@pytest.mark.parametrize("action", ["promote", "abort", "pause", "resume", "new-revision"])
@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED])
def test_nothing_is_accepted_once_the_rollout_ended(action: Any, phase: Phase) -> None:
    refusal = decisions.operator_refusal(action, status(phase), revision="rev-3")
    assert refusal is not None
    assert f"already ended ({phase.value})" in refusal


@pytest.mark.parametrize("action", ["promote", "abort", "pause", "new-revision"])
@pytest.mark.parametrize("phase", [Phase.PROMOTING, Phase.FINALISING])
def test_promotion_under_way_refuses_changes(action: Any, phase: Phase) -> None:
    refusal = decisions.operator_refusal(action, status(phase), revision="rev-3")
    assert refusal is not None
    assert "promotion is under way" in refusal


@pytest.mark.parametrize(
    "phase",
    [
        Phase.INITIALIZING,
        Phase.INITIALIZED,
        Phase.WAITING,
        Phase.PROGRESSING,
        Phase.WAITING_PROMOTION,
    ],
)
def test_operator_actions_accepted_while_analysing(phase: Phase) -> None:
    for action in ("promote", "abort", "pause"):
        assert decisions.operator_refusal(action, status(phase)) is None  # type: ignore[arg-type]
    assert decisions.operator_refusal("new-revision", status(phase), revision="rev-3") is None


def test_pause_and_resume_follow_the_paused_flag() -> None:
    assert decisions.operator_refusal("resume", status()) == (
        "the rollout is not paused: nothing to resume"
    )
    assert decisions.operator_refusal("resume", status(paused=True)) is None
    assert decisions.operator_refusal("pause", status(paused=True)) == (
        "the rollout is already paused: resume it first"
    )
    assert decisions.operator_refusal("new-revision", status(), revision=None) is not None
