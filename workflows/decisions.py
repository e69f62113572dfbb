"""Pure decisions of a rollout: plain functions of the spec and the status, no Temporal.

Everything here is deterministic by construction (no clock, no I/O), so the workflow can call it
freely and the unit tests exercise it without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from workflows.model import CheckOutcome, MetricResult, Phase, RolloutStatus
from workflows.spec import AnalysisSpec, MetricSpec

OperatorActionName = Literal["promote", "abort", "pause", "resume", "new-revision"]

_PROMOTION_UNDER_WAY = (Phase.PROMOTING, Phase.FINALISING)


def max_weight(analysis: AnalysisSpec) -> int:
    """The weight at which analysis stops increasing traffic and asks for promotion."""
    return analysis.effective_max_weight


def next_weight(analysis: AnalysisSpec, current: int) -> int:
    """The canary weight after one more successful step (Flagger's stepWeight/stepWeights rules).

    ``stepWeights`` gives the first listed weight above the current one; ``stepWeight`` adds one
    step; both stop at the maximum weight.
    """
    top = max_weight(analysis)
    if analysis.step_weights:
        return next((w for w in analysis.step_weights if w > current), top)
    step = analysis.step_weight or top
    return min(current + step, top)


def step_count(analysis: AnalysisSpec) -> int:
    """How many weight increases a rollout makes from 0 to the maximum weight."""
    weight, steps = 0, 0
    while weight < max_weight(analysis):
        weight = next_weight(analysis, weight)
        steps += 1
    return steps


def promotion_weights(
    canary_weight: int, step_weight_promotion: int | None
) -> list[tuple[int, int]]:
    """(primary, canary) weights that route all traffic to the primary after promotion.

    At once without ``stepWeightPromotion``; otherwise the primary gains that much at each step.
    The last pair is always (100, 0).
    """
    if step_weight_promotion is None:
        return [(100, 0)]
    primary = 100 - canary_weight
    steps: list[tuple[int, int]] = []
    while primary < 100:
        primary = min(100, primary + step_weight_promotion)
        steps.append((primary, 100 - primary))
    return steps or [(100, 0)]


def failed_metrics(results: Sequence[MetricResult]) -> list[MetricResult]:
    """The metric results that did not pass (breach, no data or provider error)."""
    return [r for r in results if not r.passed]


def provider_error(name: str, cause: object) -> MetricResult:
    """A metric whose check could not run (its activity failed): a failed check, not a crash."""
    return MetricResult(
        name=name, outcome=CheckOutcome.PROVIDER_ERROR, message=f"{name} provider error: {cause}"
    )


def step_failed(*, webhook_failures: int, metric_results: Sequence[MetricResult]) -> bool:
    """Whether an analysis step failed: one failed check per step, as Flagger counts it."""
    return webhook_failures > 0 or bool(failed_metrics(metric_results))


def threshold_reached(failed_checks: int, threshold: int) -> bool:
    """Flagger's rollback rule: cumulative failed checks at or above the threshold."""
    return failed_checks >= threshold


def metric_bounds(metric: MetricSpec) -> tuple[float | None, float | None]:
    """(min, max) of a metric: ``thresholdRange``, else the deprecated bare ``threshold``.

    The bare threshold is a minimum for the success rate and a maximum for everything else.
    """
    if metric.threshold_range is not None:
        return metric.threshold_range.min, metric.threshold_range.max
    if metric.threshold is None:
        return None, None
    if metric.name in ("request-success-rate", "istio_requests_total"):
        return metric.threshold, None
    return None, metric.threshold


def _number(value: float) -> str:
    return f"{value:g}"


def step_summary(webhooks: Sequence[str], metrics: Sequence[MetricSpec]) -> str:
    """The summary of a step's one activity: each check, e.g. ``check load-test,
    request-success-rate ≥ 99, request-duration ≤ 500``."""
    checks = [*webhooks, *(metric_summary(m).removeprefix("check ") for m in metrics)]
    return "check " + ", ".join(checks)


def metric_summary(metric: MetricSpec) -> str:
    """The activity summary of a metric check, e.g. ``check request-success-rate ≥ 99``."""
    low, high = metric_bounds(metric)
    parts = [f"check {metric.name}"]
    if low is not None:
        parts.append(f"≥ {_number(low)}")
    if high is not None:
        parts.append(f"≤ {_number(high)}")
    return " ".join(parts)


def operator_refusal(
    action: OperatorActionName, status: RolloutStatus, *, revision: str | None = None
) -> str | None:
    """Why an operator action makes no sense in the current state, or None when it is accepted."""
    phase = status.phase
    if phase.is_final:
        return f"the rollout has already ended ({phase.value}): nothing to {action}"
    if phase in _PROMOTION_UNDER_WAY and action != "resume":
        return (
            f"promotion is under way ({phase.value}): the primary is receiving revision "
            f"{status.revision}; {action} is no longer possible"
        )
    if action == "pause" and status.paused:
        return "the rollout is already paused: resume it first"
    if action == "resume" and not status.paused:
        return "the rollout is not paused: nothing to resume"
    if action == "new-revision" and not revision:
        return "a new revision needs a revision"
    return None
