"""Verdicts and their wording: the strings Flagger users grep for, to the character."""

from __future__ import annotations

import pytest

from activities.analysis.metrics.gofmt import go_duration, go_float, go_milliseconds
from activities.analysis.metrics.verdict import bounds_of, judge, no_data, provider_error
from workflows.model import CheckOutcome
from workflows.spec import MetricSpec, ThresholdRange


@pytest.mark.parametrize(
    ("value", "text"),
    [(99.0, "99"), (99.5, "99.5"), (0.5, "0.5"), (10.0, "10"), (1e6, "1e+06"), (-3.25, "-3.25")],
)
def test_go_float_prints_shortest_form(value: float, text: str) -> None:
    assert go_float(value) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (500, "500ms"),
        (1515.9, "1.515s"),  # truncated to whole milliseconds first, as Flagger does
        (0.4, "0s"),
        (12, "12ms"),
        (60_000, "1m0s"),
        (90_500, "1m30.5s"),
        (3_600_000, "1h0m0s"),
    ],
)
def test_go_milliseconds_reads_like_time_duration(ms: float, text: str) -> None:
    assert go_milliseconds(ms) == text


def test_go_duration_small_units() -> None:
    assert go_duration(1500) == "1.5µs"
    assert go_duration(999) == "999ns"


def test_success_rate_below_minimum_is_a_breach_with_flaggers_wording() -> None:
    result = judge("request-success-rate", 69.1666, 99, None)
    assert result.outcome == CheckOutcome.BREACH
    assert result.message == "success rate 69.17% < 99%"
    assert (result.value, result.min, result.max) == (69.1666, 99, None)


def test_request_duration_above_maximum_is_a_breach_with_go_durations() -> None:
    result = judge("request-duration", 1515.2, None, 500)
    assert result.outcome == CheckOutcome.BREACH
    assert result.message == "request duration 1.515s > 500ms"


def test_request_duration_compares_whole_milliseconds() -> None:
    # 500.9ms truncates to 500ms, which is not above a 500ms maximum (Flagger's arithmetic).
    assert judge("request-duration", 500.9, None, 500).outcome == CheckOutcome.OK


def test_custom_metric_breach_wording() -> None:
    result = judge("error-rate", 12.3, None, 10)
    assert result.message == "error-rate 12.30 > 10"
    assert judge("error-rate", 1.0, 2.5, None).message == "error-rate 1.00 < 2.5"


def test_value_within_range_is_ok() -> None:
    result = judge("request-success-rate", 99.5, 99, 100)
    assert result.passed
    assert result.message == "success rate 99.50%"


def test_bounds_are_inclusive() -> None:
    assert judge("x", 10.0, 10, 10).passed


def test_bounds_from_threshold_range_and_deprecated_threshold() -> None:
    # model_construct: the spec may normalize `threshold` away; the fallback must still hold.
    ranged = MetricSpec.model_construct(
        name="x", threshold_range=ThresholdRange(min=1, max=2), threshold=None
    )
    assert bounds_of(ranged) == (1, 2)

    def bare(name: str, threshold: float) -> MetricSpec:
        return MetricSpec.model_construct(name=name, threshold_range=None, threshold=threshold)

    assert bounds_of(bare("request-success-rate", 99)) == (99, None)
    assert bounds_of(bare("request-duration", 500)) == (None, 500)
    assert bounds_of(bare("custom", 5)) == (None, 5)


def test_no_data_and_provider_error_say_which() -> None:
    empty = no_data("request-success-rate", 99, None, workload="podinfo.test", custom=False)
    assert empty.outcome == CheckOutcome.NO_DATA
    assert "podinfo.test is not receiving traffic" in empty.message
    assert empty.value is None
    assert empty.min == 99
    down = provider_error("m", None, 5, provider="prometheus", detail="unreachable")
    assert down.outcome == CheckOutcome.PROVIDER_ERROR
    assert down.message == "prometheus query failed for m: unreachable"
    assert not down.passed
