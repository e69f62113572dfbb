"""A metric's ``compare`` option at work: sample the canary and the primary, judge, decide.

Over the metric's ``interval`` up to now, the metric's query is evaluated every ``step`` (a
Prometheus range query) once for the canary's workload and once for the primary's, the same
query rendered with the primary's workload name (``{{ target }}`` is ``<target>-primary``). The
two samples go to the pure `judge`; its `Judgement` rides on the check's `MetricResult`, and the
check's outcome follows it:

- High or Low (a change in the direction that counts as worse) → a breach, worded with the
  numbers ("request-duration: canary median 301ms is 7.3x the primary's 41ms (Mann-Whitney
  p=0.0003, shift +258ms [240ms, 275ms] ...)");
- NoData (fewer than ``minSamples`` values for either) → Flagger's "no data" outcome: a failed
  check, never a pass;
- Pass → the threshold's verdict stands.

A threshold breach stays a breach whatever the comparison says; the judgement is attached so the
report shows both. The check is a property of the metric, so it works however the workflow
calls the metric activity.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.analysis.metrics.judge import Describe, judge
from activities.analysis.metrics.prometheus import RangeSeries
from activities.analysis.metrics.provider import MetricProvider
from activities.analysis.metrics.verdict import DURATION, SUCCESS_RATE
from workflows.model import CheckOutcome, Judgement, MetricResult
from workflows.spec import MetricSpec
from workflows.spec_compare import MetricCompare


def describe_for(metric: str) -> Describe:
    """How a value of ``metric`` reads in a reason: milliseconds, percent, or plain."""
    if metric == DURATION:
        return lambda value: f"{value:.0f}ms" if abs(value) >= 10 else f"{value:.2g}ms"
    if metric == SUCCESS_RATE:
        return lambda value: f"{value:.2f}%"
    return lambda value: f"{value:.4g}"


def samples(series: list[RangeSeries]) -> list[float]:
    """The values of a range query: its last series', as an instant query reads the last sample
    of its vector (a check's query is meant to return one series)."""
    return [value for _, value in series[-1].samples] if series else []


def sample_both(
    provider: MetricProvider,
    *,
    canary_query: str,
    primary_query: str,
    interval_seconds: float,
    options: MetricCompare,
    now: datetime | None = None,
) -> tuple[list[float], list[float]]:
    """The canary's and the primary's samples over the last ``interval_seconds``."""
    end = now or datetime.now(UTC)
    start = end - timedelta(seconds=interval_seconds)
    step = options.step_seconds(interval_seconds)
    canary = provider.run_range_query(canary_query, start=start, end=end, step_seconds=step)
    primary = provider.run_range_query(primary_query, start=start, end=end, step_seconds=step)
    return samples(canary), samples(primary)


def judged(
    result: MetricResult, metric: MetricSpec, canary: list[float], primary: list[float]
) -> MetricResult:
    """``result`` (the threshold's verdict) with the comparison's judgement and outcome."""
    assert metric.compare is not None  # only called for a metric with compare
    judgement = judge(canary, primary, metric.compare, describe=describe_for(metric.name))
    outcome, message = _outcome(result, metric.name, judgement)
    return result.model_copy(
        update={"judgement": judgement, "outcome": outcome, "message": message}
    )


def _outcome(result: MetricResult, name: str, judgement: Judgement) -> tuple[CheckOutcome, str]:
    said = f"{name}: {judgement.reason}"
    if judgement.verdict in ("High", "Low"):
        if result.outcome == CheckOutcome.BREACH:
            return CheckOutcome.BREACH, f"{result.message}; {said}"
        return CheckOutcome.BREACH, said
    if judgement.verdict == "NoData" and result.outcome == CheckOutcome.OK:
        return CheckOutcome.NO_DATA, said
    return result.outcome, result.message
