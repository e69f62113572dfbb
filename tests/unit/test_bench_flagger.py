"""The side-by-side benchmark's arithmetic (bench/_flagger_figures.py): weights read from the
VirtualServices both products write, latencies from watched series, costs per canary, ratios."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

from bench._flagger_figures import (
    Cost,
    Spread,
    Usage,
    canary_weight_of,
    cpu_per_step_ms,
    first_after,
    fmt_ratio,
    fmt_seconds,
    increases,
    ratio,
    summed,
)
from bench._flagger_report import Latency, Scale, from_record, summary, table


def _vs(*routes: tuple[str, int | None]) -> dict:
    route = []
    for host, weight in routes:
        entry: dict = {"destination": {"host": host}}
        if weight is not None:
            entry["weight"] = weight
        route.append(entry)
    return {"metadata": {"name": "podinfo"}, "spec": {"http": [{"route": route}]}}


def test_canary_weight_is_read_from_the_first_http_route() -> None:
    assert canary_weight_of(_vs(("podinfo-primary", 70), ("podinfo-canary", 30)), "podinfo") == 30
    # A fully qualified host names the same Service; a missing weight is 0 (Istio's default for
    # the second destination is not relevant here: both products write weights explicitly).
    fqdn = _vs(("podinfo-primary", 100), ("podinfo-canary.test.svc.cluster.local", None))
    assert canary_weight_of(fqdn, "podinfo") == 0
    # Another canary's route in the same namespace does not count.
    assert canary_weight_of(_vs(("podinfo-canary2", 40)), "podinfo") is None
    assert canary_weight_of({"spec": {}}, "podinfo") is None


def test_first_after_ignores_what_came_before_the_change() -> None:
    series = [(1.0, 10), (2.0, 0), (5.0, 10), (7.0, 20), (9.0, 0)]
    assert first_after(series, 1.5, lambda w: w > 0) == 5.0
    assert first_after(series, 7.5, lambda w: w == 0) == 9.0
    assert first_after(series, 9.5, lambda w: w == 0) is None


def test_increases_counts_weight_steps_inside_the_window_only() -> None:
    series = [(0.0, 0), (1.0, 10), (2.0, 20), (3.0, 0), (4.0, 10), (5.0, None), (6.0, 20)]
    assert increases(series, 0.0, 10.0) == 4
    # The rise at 1.0 is outside; 2.0 compares with the 10 read before the window.
    assert increases(series, 1.5, 4.5) == 2


def test_spread_median_and_worst() -> None:
    spread = Spread([3.0, 1.0, 2.0, 10.0])
    assert spread.median == 2.5
    assert spread.worst == 10.0
    assert spread.text() == "median 2.5 s, max 10.0 s (n=4)"
    assert math.isnan(Spread().median)
    assert Spread().text() == "no sample"


def test_ratio_is_flagger_over_coalmine() -> None:
    assert ratio(12.0, 3.0) == 4.0
    assert fmt_ratio(ratio(12.0, 3.0)) == "4.0×"
    assert fmt_ratio(ratio(1.0, 4.0)) == "0.25×"  # Coalmine the slower one reads below 1
    assert fmt_ratio(ratio(5.0, 0.02)) == "250×"
    assert math.isnan(ratio(1.0, 0.0))
    assert fmt_ratio(ratio(float("nan"), 1.0)) == "n/a"


def test_seconds_are_shown_in_milliseconds_below_one() -> None:
    assert fmt_seconds(0.0374) == "37 ms"
    assert fmt_seconds(12.34) == "12.3 s"
    assert fmt_seconds(float("nan")) == "n/a"


def test_cost_per_canary_uses_the_window_and_the_baseline() -> None:
    base = Usage(cpu=1.0, rss_kb=100_000)
    start = Usage(cpu=5.0, rss_kb=150_000)
    end = Usage(cpu=11.0, rss_kb=160_000)
    cost = Cost.between(100, 60.0, base, start, end)
    assert cost.cpu == 6.0  # the window only, not what initialization used
    assert cost.rss_delta_kb == 60_000  # over the process's baseline, before any Canary
    assert cost.millicores_per_canary == 1.0  # 6 CPU-s / 60 s / 100 canaries = 1 millicore
    assert cost.kb_per_canary == 600.0
    assert cpu_per_step_ms(cost, 200) == 30.0
    assert math.isnan(cpu_per_step_ms(cost, 0))


def test_processes_are_summed() -> None:
    readings = {"worker": Usage(2.0, 300), "controller": Usage(0.5, 100), "other": Usage(9, 9)}
    assert summed(readings, ["worker", "controller"]) == Usage(2.5, 400)


def test_a_runs_record_gives_back_its_table_and_summary() -> None:
    lat = {
        "flagger": Latency(Spread([8.0]), Spread([18.0, 19.0]), Spread([68.0]), Spread([5.0])),
        "coalmine": Latency(Spread([3.0]), Spread([18.0]), Spread([34.0]), Spread([0.1])),
    }
    flagger = Scale(100, 100, 79.0, Cost(100, 30.0, 0.6, 14_000), Cost(100, 60.0, 2.0, 14_000), 88)
    coalmine = Scale(
        100,
        100,
        59.0,
        Cost(100, 30.0, 0.06, 60_000),
        Cost(100, 60.0, 8.0, 56_000),
        37,
        Cost(100, 30.0, 0.03, 100_000),
        Cost(100, 60.0, 4.0, 100_000),
    )
    scale = {"flagger": {100: flagger}, "coalmine": {100: coalmine}}
    record = {
        "latency": {p: asdict(v) for p, v in lat.items()},
        "scale": {p: {str(n): asdict(s) for n, s in v.items()} for p, v in scale.items()},
    }
    back_lat, back_scale = from_record(json.loads(json.dumps(record)))
    assert back_lat == lat
    assert back_scale == scale
    line = summary(back_lat, back_scale)
    # Flagger ÷ Coalmine: promotion 68 / 34 s, abort 5 / 0.1 s, CPU (2.0 / 60 / 100) / (8.0 / 60
    # / 100), memory 140 / 560 KB per canary.
    assert "promotion 2.0×" in line
    assert "abort 50×" in line
    assert "100 canaries: CPU 0.25×, memory 0.25×" in line
    text = table(back_lat, back_scale)
    assert "| abort sent → canary weight 0, median | 5.0 s (max 5.0 s, n=1) | 100 ms" in text
    # With the Temporal server added, Coalmine's CPU per canary is 2.0 millicores instead of 1.33.
    assert "1.33 millicores (2.00 with Temporal)" in text
    assert "88 steps, 23 ms | 37 steps, 216 ms" in text
