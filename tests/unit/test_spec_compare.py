"""A metric's ``compare`` option: additive, normalized once, refused with the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from tests.canaries import canary_doc
from workflows.spec import SpecError, parse_canary
from workflows.spec_analysis import MetricSpec


def metrics_of(*metrics: dict[str, Any]) -> list[MetricSpec]:
    return parse_canary(canary_doc(analysis={"metrics": list(metrics)})).spec.analysis.metrics


def refusal(*metrics: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        metrics_of(*metrics)
    return caught.value


def test_a_metric_without_compare_is_read_as_before() -> None:
    (metric,) = metrics_of({"name": "request-duration", "interval": "1m", "threshold": 500})
    assert metric.compare is None
    assert metric.threshold_range is not None
    assert metric.threshold_range.max == 500
    dumped = metric.model_dump(by_alias=True, exclude_none=True)
    assert "compare" not in dumped


def test_compare_defaults_and_the_direction_of_each_builtin() -> None:
    duration, rate, custom = metrics_of(
        {"name": "request-duration", "interval": "1m", "compare": {}},
        {"name": "request-success-rate", "interval": "1m", "compare": {"allowedEffect": 0.01}},
        {"name": "errors", "templateRef": {"name": "errors"}, "compare": {"minSamples": 20}},
    )
    assert duration.compare is not None
    assert duration.compare.direction == "increase"
    assert duration.compare.allowed_effect == 0.25
    assert duration.compare.min_samples == 10
    assert duration.compare.confidence == 0.95
    assert duration.compare.remove_outliers is False
    assert duration.compare.step_seconds(60) == 3.0  # 1m / (2 × 10)
    assert duration.compare.sample_count(60) == 21
    assert rate.compare is not None
    assert rate.compare.direction == "decrease"
    assert custom.compare is not None
    assert custom.compare.direction == "increase"
    assert custom.compare.step_seconds(60) == 1.5
    # Judged against the primary only: no implicit threshold of 0 that any latency would breach.
    assert duration.threshold_range is None
    assert rate.threshold_range is None


def test_a_threshold_and_a_comparison_together() -> None:
    (metric,) = metrics_of(
        {
            "name": "request-duration",
            "interval": "10s",
            "thresholdRange": {"max": 500},
            "compare": {"direction": "either", "step": "1s", "removeOutliers": True},
        }
    )
    assert metric.threshold_range is not None
    assert metric.threshold_range.max == 500
    assert metric.compare is not None
    assert metric.compare.direction == "either"
    assert metric.compare.sample_count(10) == 11


def test_an_inline_query_cannot_be_compared() -> None:
    error = refusal({"name": "latency", "query": "sum(x)", "compare": {}})
    assert error.paths == ["spec.analysis.metrics[0].compare"]
    assert "move the query into a MetricTemplate" in str(error)


def test_an_interval_too_short_for_min_samples_names_the_fix() -> None:
    error = refusal({"name": "request-duration", "interval": "5s", "compare": {}})
    assert error.paths == ["spec.analysis.metrics[0].compare.minSamples"]
    assert "gives 6 samples, fewer than minSamples (10)" in str(error)
    assert "interval to at least 9s" in str(error)


def test_a_step_longer_than_the_interval_is_refused() -> None:
    error = refusal({"name": "request-duration", "interval": "10s", "compare": {"step": "20s"}})
    assert error.paths == ["spec.analysis.metrics[0].compare.step"]


@pytest.mark.parametrize(
    ("compare", "field"),
    [
        ({"against": "baseline"}, "against"),
        ({"direction": "up"}, "direction"),
        ({"allowedEffect": -0.1}, "allowedEffect"),
        ({"minSamples": 2}, "minSamples"),
        ({"confidence": 1.0}, "confidence"),
        ({"step": "soon"}, "step"),
        ({"tolerance": 0.2}, "tolerance"),
    ],
)
def test_bad_options_name_their_field(compare: dict[str, Any], field: str) -> None:
    error = refusal({"name": "request-duration", "interval": "1m", "compare": compare})
    assert f"spec.analysis.metrics[0].compare.{field}" in error.paths


def test_too_many_samples_are_refused_naming_the_step() -> None:
    error = refusal({"name": "request-duration", "interval": "1h", "compare": {"step": "1s"}})
    assert error.paths == ["spec.analysis.metrics[0].compare.step"]
    assert "gives 3601 samples, more than 1000: set compare.step to at least 4s" in str(error)
    (metric,) = metrics_of({"name": "request-duration", "interval": "1h", "compare": {}})
    assert metric.compare is not None
    assert metric.compare.sample_count(3600) == 21  # the default step keeps it small
