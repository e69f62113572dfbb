"""The sandbox workload's latency distribution: log-normal, fixed by its median and p99."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sandbox.workloads.latency import drawn_ms, latency_seconds


def draws(env: dict[str, str], n: int = 20_000) -> np.ndarray:
    rng = random.Random(42)
    return np.array([drawn_ms(env, rng) for _ in range(n)])


@pytest.mark.parametrize(("p50", "p99"), [(20, 40), (20, 300), (100, 150)])
def test_the_median_and_p99_are_the_ones_asked_for(p50: float, p99: float) -> None:
    values = draws({"LATENCY_P50_MS": str(p50), "LATENCY_P99_MS": str(p99)})
    assert np.percentile(values, 50) == pytest.approx(p50, rel=0.03)
    assert np.percentile(values, 99) == pytest.approx(p99, rel=0.06)
    assert values.min() > 0


def test_the_ceiling_bounds_every_draw() -> None:
    values = draws({"LATENCY_P50_MS": "20", "LATENCY_P99_MS": "300", "LATENCY_MAX_MS": "450"})
    assert values.max() == 450.0
    assert np.percentile(values, 50) == pytest.approx(20, rel=0.03)


def test_unset_or_bad_values_add_nothing_and_the_fixed_fault_still_adds() -> None:
    assert latency_seconds({}) == 0.0
    assert latency_seconds({"LATENCY_P50_MS": "soon"}) == 0.0
    assert latency_seconds({"LATENCY_P50_MS": "-5"}) == 0.0
    assert latency_seconds({"FAULT_LATENCY_MS": "700"}) == 0.7
    # Only a median: a constant. A p99 under the median is read as the median.
    assert set(draws({"LATENCY_P50_MS": "30"}, n=50)) == {30.0}
    assert set(draws({"LATENCY_P50_MS": "30", "LATENCY_P99_MS": "10"}, n=50)) == {30.0}
    with_fault = latency_seconds({"FAULT_LATENCY_MS": "100", "LATENCY_P50_MS": "30"})
    assert with_fault == pytest.approx(0.13)
