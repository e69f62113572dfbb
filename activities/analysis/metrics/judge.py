"""The canary-versus-primary judge: is the canary's sample significantly and materially worse?

A pure function of two samples and the metric's `MetricCompare` options, after the semantics of
Kayenta's Mann-Whitney classifier (Netflix's automated canary analysis):

1. clean each sample: drop NaN and infinite values; optionally drop values outside Tukey's fences
   (below Q1 - 1.5 IQR or above Q3 + 1.5 IQR), each sample on its own;
2. too few values left in either sample (``minSamples``) is **NoData**, never a pass: a canary
   that has not been measured has not been shown to be good;
3. identical samples (every value equal) are a **Pass**: there is nothing to test;
4. otherwise a two-sided Mann-Whitney U test (scipy's ``mannwhitneyu``) gives the p-value, and
   the Hodges-Lehmann estimator the shift, canary minus primary (the median of every pairwise
   difference), with its distribution-free confidence interval (the order statistics of those
   differences that invert the test, by the normal approximation with ties corrected);
5. the verdict is **High** when the difference is significant (p < 1 - confidence) and the shift
   exceeds the allowed effect (``allowedEffect`` × |the primary's median|) upwards, **Low** when
   it does downwards, each only where ``direction`` counts that way as worse; else **Pass**.

Kayenta, too, requires both a significant difference and a material one, so a large fleet's
tiny but significant differences do not fail a canary. The verdict carries the numbers behind it
(`workflows.model.Judgement`) for the rollout's status and its report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats  # type: ignore[import-untyped]

from workflows.model import Judgement
from workflows.spec_compare import MetricCompare

Array = NDArray[np.float64]
Describe = Callable[[float], str]
Verdict = Literal["Pass", "High", "Low", "NoData"]

TUKEY_FENCE = 1.5


def _plain(value: float) -> str:
    return f"{value:.4g}"


def clean(values: Sequence[float], *, remove_outliers: bool) -> Array:
    """The finite values of a sample, without Tukey's outliers when asked."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if remove_outliers and array.size >= 4:
        q1, q3 = np.percentile(array, [25, 75])
        spread = TUKEY_FENCE * (q3 - q1)
        array = array[(array >= q1 - spread) & (array <= q3 + spread)]
    return array


def hodges_lehmann(canary: Array, primary: Array, confidence: float) -> tuple[float, float, float]:
    """The shift (canary minus primary) and its confidence interval ``(shift, low, high)``.

    The interval is ``[d(k+1), d(mn-k)]`` of the m·n sorted pairwise differences, with k the
    lower critical value of U: the shifts the two-sided test at this level would not reject.
    """
    differences = np.sort(np.subtract.outer(canary, primary).ravel())
    m, n = canary.size, primary.size
    total = m + n
    _, ties = np.unique(np.concatenate([canary, primary]), return_counts=True)
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties)) / (total * (total - 1))
    sigma = math.sqrt(m * n / 12.0 * ((total + 1) - tie_term))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    k = math.floor(m * n / 2 - z * sigma)
    k = min(max(k, 0), (m * n - 1) // 2)
    return float(np.median(differences)), float(differences[k]), float(differences[-k - 1])


def judge(
    canary: Sequence[float],
    primary: Sequence[float],
    options: MetricCompare,
    *,
    describe: Describe = _plain,
) -> Judgement:
    """The verdict on the canary's sample against the primary's.

    ``describe`` renders a value with its unit in the reason ("41ms", "99.50%").
    """
    c = clean(canary, remove_outliers=options.remove_outliers)
    p = clean(primary, remove_outliers=options.remove_outliers)
    if c.size < options.min_samples or p.size < options.min_samples:
        reason = (
            f"too few samples to compare with the primary: canary {c.size}, primary {p.size} "
            f"(minSamples {options.min_samples})"
        )
        return _judgement("NoData", reason, c, p, options)
    if np.ptp(np.concatenate([c, p])) == 0:
        reason = f"canary and primary all read {describe(float(c[0]))}"
        return _judgement("Pass", reason, c, p, options, p_value=1.0, shift=(0.0, 0.0, 0.0))
    p_value = float(stats.mannwhitneyu(c, p, alternative="two-sided").pvalue)
    shift = hodges_lehmann(c, p, options.confidence)
    measured = _judgement("Pass", "", c, p, options, p_value=p_value, shift=shift)
    verdict = _verdict(measured, significant=p_value < 1 - options.confidence)
    reason = _reason(measured, verdict, options.confidence, describe)
    return _judgement(verdict, reason, c, p, options, p_value=p_value, shift=shift)


def _judgement(
    verdict: Verdict,
    reason: str,
    canary: Array,
    primary: Array,
    options: MetricCompare,
    *,
    p_value: float | None = None,
    shift: tuple[float, float, float] | None = None,
) -> Judgement:
    estimate, low, high = shift if shift is not None else (None, None, None)
    return Judgement(
        verdict=verdict,
        p_value=p_value,
        shift=estimate,
        ci_low=low,
        ci_high=high,
        canary_n=int(canary.size),
        primary_n=int(primary.size),
        canary_median=float(np.median(canary)) if canary.size else None,
        primary_median=float(np.median(primary)) if primary.size else None,
        allowed_effect=options.allowed_effect,
        direction=options.direction or "increase",
        reason=reason,
    )


def allowed_shift(judgement: Judgement) -> float:
    """The shift tolerated: the allowed effect times the primary's median (0 if unknown)."""
    return judgement.allowed_effect * abs(judgement.primary_median or 0.0)


def _verdict(j: Judgement, *, significant: bool) -> Verdict:
    shift, allowed = j.shift or 0.0, allowed_shift(j)
    if significant and shift > allowed and j.direction in ("increase", "either"):
        return "High"
    if significant and shift < -allowed and j.direction in ("decrease", "either"):
        return "Low"
    return "Pass"


def _signed(value: float, describe: Describe) -> str:
    return ("+" if value >= 0 else "-") + describe(abs(value))


def _reason(j: Judgement, verdict: Verdict, confidence: float, describe: Describe) -> str:
    canary, primary = j.canary_median or 0.0, j.primary_median or 0.0
    shift, low, high = j.shift or 0.0, j.ci_low or 0.0, j.ci_high or 0.0
    p_value = 1.0 if j.p_value is None else j.p_value
    if primary != 0:
        head = (
            f"canary median {describe(canary)} is {canary / primary:.2g}x the primary's "
            f"{describe(primary)}"
        )
    else:
        head = f"canary median {describe(canary)}, the primary's {describe(primary)}"
    numbers = (
        f"Mann-Whitney p={p_value:.2g}, shift {_signed(shift, describe)} "
        f"[{describe(low)}, {describe(high)}] at {confidence:.0%}, "
        f"±{describe(allowed_shift(j))} allowed"
    )
    if verdict != "Pass":
        return f"{head} ({numbers})"
    if p_value >= 1 - confidence:
        why = "no significant difference"
    elif abs(shift) <= allowed_shift(j):
        why = "within the allowed effect"
    else:
        why = f"a change this metric does not count as worse (only {j.direction} does)"
    return f"{why}: {head} ({numbers})"
