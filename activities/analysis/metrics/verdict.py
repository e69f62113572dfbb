"""The verdict on one metric value: within its range, or a breach worded as Flagger words it.

Pure functions (no I/O), so the wording is unit-tested to the character:

- ``request-success-rate`` is a percentage: "success rate 69.17% < 99%";
- ``request-duration`` is milliseconds, compared and printed as Go durations after truncation to
  whole milliseconds, as Flagger does: "request duration 1.515s > 500ms";
- any other metric: "<name> 12.30 > 10" (two decimals, the bound in Go's shortest form).

The message is the part after "Halt podinfo.test advancement " in Flagger's event; the workflow
adds that prefix. The deprecated bare ``threshold`` is a minimum for the success rate and a
maximum for everything else (Flagger's reading).
"""

from __future__ import annotations

from activities.analysis.metrics.gofmt import go_float, go_milliseconds
from workflows.model import CheckOutcome, MetricResult
from workflows.spec import MetricSpec

SUCCESS_RATE = "request-success-rate"
DURATION = "request-duration"


def bounds_of(metric: MetricSpec) -> tuple[float | None, float | None]:
    """``(min, max)`` from ``thresholdRange``, or from the deprecated ``threshold``."""
    if metric.threshold_range is not None:
        return metric.threshold_range.min, metric.threshold_range.max
    if metric.threshold is not None:
        if metric.name == SUCCESS_RATE:
            return metric.threshold, None
        return None, metric.threshold
    return None, None


def _describe(name: str, value: float) -> str:
    if name == SUCCESS_RATE:
        return f"success rate {value:.2f}%"
    if name == DURATION:
        return f"request duration {go_milliseconds(value)}"
    return f"{name} {value:.2f}"


def _bound(name: str, bound: float) -> str:
    if name == SUCCESS_RATE:
        return f"{go_float(bound)}%"
    if name == DURATION:
        return go_milliseconds(bound)
    return go_float(bound)


def _comparable(name: str, value: float) -> float:
    # Flagger converts both sides of the duration check to whole milliseconds first.
    return float(int(value)) if name == DURATION else value


def judge(name: str, value: float, low: float | None, high: float | None) -> MetricResult:
    """OK when ``low <= value <= high`` (each bound optional), else a breach."""
    subject = _describe(name, value)
    compared = _comparable(name, value)
    outcome, message = CheckOutcome.OK, subject
    if low is not None and compared < _comparable(name, low):
        outcome, message = CheckOutcome.BREACH, f"{subject} < {_bound(name, low)}"
    elif high is not None and compared > _comparable(name, high):
        outcome, message = CheckOutcome.BREACH, f"{subject} > {_bound(name, high)}"
    return MetricResult(name=name, value=value, min=low, max=high, outcome=outcome, message=message)


def no_data(
    name: str, low: float | None, high: float | None, *, workload: str, custom: bool
) -> MetricResult:
    """The query found nothing: usually no traffic reaches the canary."""
    if custom:
        message = f"no values found for custom metric {name}"
    else:
        message = f"no values found for metric {name} probably {workload} is not receiving traffic"
    return MetricResult(
        name=name, value=None, min=low, max=high, outcome=CheckOutcome.NO_DATA, message=message
    )


def provider_error(
    name: str, low: float | None, high: float | None, *, provider: str, detail: str
) -> MetricResult:
    """The backend could not be asked; ``detail`` carries no secret (see `errors`)."""
    return MetricResult(
        name=name,
        value=None,
        min=low,
        max=high,
        outcome=CheckOutcome.PROVIDER_ERROR,
        message=f"{provider} query failed for {name}: {detail}",
    )
