"""A metric's ``compare`` option: judge the canary against the primary, not only a threshold.

A fixed threshold misses a regression that stays under it (p99 from 40 ms to 300 ms under a
500 ms bound). With ``compare``, the metric's query is also sampled over its ``interval`` for
both workloads, every ``step``, and the two samples are judged with a two-sided Mann-Whitney U
test and the Hodges-Lehmann shift (``activities.analysis.metrics.judge``): the check fails when
the canary is significantly and materially worse than the primary, and finds no data when
either workload has fewer than ``minSamples`` samples.

Additive: a Flagger Canary has no ``compare`` and is read exactly as before. Part of the Canary
spec (``workflows.spec_analysis.MetricSpec.compare``).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from workflows._base import Duration, SpecModel, duration_seconds, format_duration

Direction = Literal["increase", "decrease", "either"]

DEFAULT_MIN_SAMPLES = 10
MAX_SAMPLES = 1_000
"""Samples per workload at most: the shift's interval sorts every pairwise difference (a million
at this size, ~8 MB and a tenth of a second), so the sample count bounds the check's cost."""
MIN_STEP_SECONDS = 1.0
"""The default step never goes below a second: scrapes are rarely more frequent, and a step
shorter than the scrape interval only repeats values."""


class MetricCompare(SpecModel):
    """Judge the canary's samples of this metric against the primary's."""

    against: Literal["primary"] = Field(
        "primary", description="The workload compared with: the primary (the only one today)."
    )
    direction: Direction | None = Field(
        None,
        description="Which change counts as worse: increase, decrease or either. Default: "
        "decrease for the builtin request-success-rate, increase for everything else.",
    )
    allowed_effect: float = Field(
        0.25,
        ge=0,
        allow_inf_nan=False,
        description="Tolerated shift, as a fraction of the primary's median (0.25: the canary "
        "may be 25% worse before a significant difference fails the check).",
    )
    min_samples: int = Field(
        DEFAULT_MIN_SAMPLES,
        ge=3,
        le=10_000,
        description="Samples each workload needs; with fewer the check finds no data (never a "
        "pass).",
    )
    remove_outliers: bool = Field(
        False, description="Drop values outside Tukey's fences (1.5 IQR) before judging."
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="Confidence level: a difference is significant when the Mann-Whitney "
        "p-value is below 1 - confidence; also the level of the shift's interval.",
    )
    step: Duration | None = Field(
        None,
        description="Time between samples, e.g. '5s' (at least the scrape interval). Default: "
        "the metric's interval / (2 × minSamples), at least 1s.",
    )

    def step_seconds(self, interval_seconds: float) -> float:
        """The sampling step for a metric whose window is ``interval_seconds``."""
        if self.step is not None:
            return duration_seconds(self.step)
        return max(interval_seconds / (2 * self.min_samples), MIN_STEP_SECONDS)

    def sample_count(self, interval_seconds: float) -> int:
        """Samples a range over ``interval_seconds`` holds (both ends included)."""
        # The epsilon keeps 10s / 1s at 11 samples despite float division.
        return math.floor(interval_seconds / self.step_seconds(interval_seconds) + 1e-9) + 1

    def too_many_samples(
        self, *, metric: str, interval: str, interval_seconds: float
    ) -> str | None:
        """Why the metric's interval holds too many samples (over `MAX_SAMPLES`), or None."""
        count = self.sample_count(interval_seconds)
        if count <= MAX_SAMPLES:
            return None
        least = format_duration(math.ceil(interval_seconds / (MAX_SAMPLES - 1)))
        return (
            f"metric {metric!r}: an interval of {interval} sampled every {self.step} gives "
            f"{count} samples, more than {MAX_SAMPLES}: set compare.step to at least {least}"
        )

    def too_few_samples(self, *, metric: str, interval: str, interval_seconds: float) -> str | None:
        """Why the metric's interval cannot hold ``minSamples`` samples, or None."""
        step = self.step_seconds(interval_seconds)
        count = self.sample_count(interval_seconds)
        if count >= self.min_samples:
            return None
        needed = format_duration(step * (self.min_samples - 1))
        return (
            f"metric {metric!r}: an interval of {interval} sampled every "
            f"{format_duration(step)} gives {count} samples, fewer than minSamples "
            f"({self.min_samples}): set the metric's interval to at least {needed}, shorten "
            "compare.step, or lower compare.minSamples"
        )


def default_direction(*, success_rate: bool) -> Direction:
    """A success rate gets worse by falling; latencies, error counts and the rest by rising."""
    return "decrease" if success_rate else "increase"
