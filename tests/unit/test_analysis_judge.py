"""The canary-versus-primary judge on known samples, with scipy's test as the reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from activities.analysis.metrics.judge import clean, hodges_lehmann, judge
from activities.analysis.metrics.verdict import judge as threshold_check
from workflows.model import CheckOutcome
from workflows.spec_compare import MetricCompare

INCREASE = MetricCompare(direction="increase")


def ms(value: float) -> str:
    return f"{value:.0f}ms"


def p99_samples(seed: int, centre: float, spread: float, n: int = 30) -> list[float]:
    """A p99 latency series as Prometheus samples it: noisy around ``centre`` milliseconds."""
    rng = np.random.default_rng(seed)
    return list(rng.normal(centre, spread, n))


def test_a_regression_under_the_threshold_is_high() -> None:
    # p99 from ~40 ms to ~300 ms: the fixed 500 ms bound passes it, the judge does not.
    primary = p99_samples(1, 40, 3)
    canary = p99_samples(2, 300, 20)
    assert threshold_check("request-duration", max(canary), None, 500).outcome == CheckOutcome.OK

    verdict = judge(canary, primary, INCREASE, describe=ms)

    assert verdict.verdict == "High"
    reference = stats.mannwhitneyu(canary, primary, alternative="two-sided")
    assert verdict.p_value == pytest.approx(reference.pvalue)
    assert verdict.p_value < 1e-9
    differences = [c - p for c in canary for p in primary]
    assert verdict.shift == pytest.approx(float(np.median(differences)))
    assert verdict.ci_low is not None
    assert verdict.ci_high is not None
    assert 200 < verdict.ci_low < verdict.shift < verdict.ci_high < 320
    assert (verdict.canary_n, verdict.primary_n) == (30, 30)
    assert verdict.primary_median == pytest.approx(float(np.median(primary)))
    assert verdict.reason == (
        "canary median 300ms is 7.5x the primary's 40ms (Mann-Whitney p=3e-11, "
        "shift +261ms [252ms, 267ms] at 95%, ±10ms allowed)"
    )


def test_the_same_distribution_passes() -> None:
    verdict = judge(p99_samples(3, 40, 3), p99_samples(4, 40, 3), INCREASE)
    assert verdict.verdict == "Pass"
    assert verdict.p_value is not None
    assert verdict.p_value > 0.05
    assert verdict.reason.startswith("no significant difference")


def test_a_significant_but_small_shift_is_within_the_allowed_effect() -> None:
    # 40 → 44 ms is certain with these samples, but 10% is under the 25% allowed.
    primary, canary = p99_samples(5, 40, 0.5), p99_samples(6, 44, 0.5)
    verdict = judge(canary, primary, INCREASE)
    assert verdict.p_value is not None
    assert verdict.p_value < 1e-6
    assert verdict.verdict == "Pass"
    assert verdict.reason.startswith("within the allowed effect")
    strict = judge(canary, primary, MetricCompare(direction="increase", allowed_effect=0.05))
    assert strict.verdict == "High"


def test_only_the_worse_direction_fails() -> None:
    primary, faster = p99_samples(7, 40, 3), p99_samples(8, 20, 3)
    assert judge(faster, primary, INCREASE).verdict == "Pass"
    assert judge(faster, primary, MetricCompare(direction="either")).verdict == "Low"
    assert judge(faster, primary, MetricCompare(direction="decrease")).verdict == "Low"
    slower = p99_samples(9, 80, 3)
    assert judge(slower, primary, MetricCompare(direction="decrease")).verdict == "Pass"
    assert judge(slower, primary, MetricCompare(direction="either")).verdict == "High"


def test_a_falling_success_rate_is_low() -> None:
    primary = [99.9, 100.0, 99.8, 100.0, 99.9, 100.0, 99.7, 99.9, 100.0, 99.8, 99.9, 100.0]
    canary = [92.1, 91.5, 93.0, 90.2, 92.8, 91.1, 92.4, 90.9, 93.3, 91.7, 92.0, 91.4]
    verdict = judge(canary, primary, MetricCompare(direction="decrease", allowed_effect=0.01))
    assert verdict.verdict == "Low"
    assert verdict.shift is not None
    assert verdict.shift < -5


def test_too_few_samples_is_no_data_never_a_pass() -> None:
    primary = p99_samples(10, 40, 3)
    canary = [300.0, 310.0, float("nan"), 290.0, float("inf")] + [float("nan")] * 10
    verdict = judge(canary, primary, INCREASE)
    assert verdict.verdict == "NoData"
    assert verdict.canary_n == 3  # NaN and infinities dropped
    assert verdict.primary_n == 30
    assert verdict.p_value is None
    assert "canary 3, primary 30 (minSamples 10)" in verdict.reason
    assert judge([], [], INCREASE).verdict == "NoData"
    assert judge(canary, primary, MetricCompare(direction="increase", min_samples=3)).verdict == (
        "High"
    )


def test_identical_constant_samples_pass() -> None:
    verdict = judge([100.0] * 12, [100.0] * 15, MetricCompare(direction="decrease"))
    assert verdict.verdict == "Pass"
    assert verdict.p_value == 1.0
    assert verdict.shift == 0.0


def test_tukey_fences_drop_outliers_from_each_sample() -> None:
    kept = clean([1, 2, 3, 4, 5, 100], remove_outliers=True)
    assert list(kept) == [1, 2, 3, 4, 5]  # Q1 2.25, Q3 4.75: fences -1.5 and 8.5
    assert list(clean([1, 2, 3, 4, 5, 100], remove_outliers=False)) == [1, 2, 3, 4, 5, 100]

    # Two stray spikes in an otherwise equal canary: removed, the canary passes the strict check.
    primary = p99_samples(11, 40, 1, n=20)
    canary = [*p99_samples(12, 40, 1, n=18), 400.0, 420.0]
    strict = MetricCompare(direction="increase", allowed_effect=0.0, remove_outliers=True)
    verdict = judge(canary, primary, strict)
    assert verdict.canary_n == 18
    assert verdict.verdict == "Pass"


@pytest.mark.parametrize("seed", range(20))
def test_the_interval_is_the_shifts_the_test_does_not_reject(seed: int) -> None:
    # The Hodges-Lehmann interval inverts the test: shifting the canary by a value just inside
    # it leaves scipy's (normal, uncorrected) test unrejected at 95%, just outside rejects it.
    rng = np.random.default_rng(seed)
    m, n = rng.integers(10, 40, 2)
    canary = rng.lognormal(3, 0.5, m) + rng.normal(0, 5)
    primary = rng.lognormal(3, 0.5, n)
    _, low, high = hodges_lehmann(canary, primary, 0.95)
    differences = np.sort(np.subtract.outer(canary, primary).ravel())
    lo, hi = int(np.searchsorted(differences, low)), int(np.searchsorted(differences, high))

    def p_value(mu: float) -> float:
        return float(
            stats.mannwhitneyu(
                canary - mu, primary, method="asymptotic", use_continuity=False
            ).pvalue
        )

    assert p_value((differences[lo] + differences[lo + 1]) / 2) >= 0.05
    assert p_value((differences[lo - 1] + differences[lo]) / 2) < 0.05
    assert p_value((differences[hi - 1] + differences[hi]) / 2) >= 0.05
    assert p_value((differences[hi] + differences[hi + 1]) / 2) < 0.05


def test_a_wider_confidence_gives_a_wider_interval() -> None:
    canary = np.array(p99_samples(13, 50, 5))
    primary = np.array(p99_samples(14, 40, 5))
    _, low90, high90 = hodges_lehmann(canary, primary, 0.90)
    _, low99, high99 = hodges_lehmann(canary, primary, 0.99)
    assert low99 < low90 < high90 < high99
