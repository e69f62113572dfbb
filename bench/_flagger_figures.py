"""The side-by-side comparison's arithmetic, kept apart from the processes so it can be tested:
reading a weight out of a VirtualService, the first time a series crosses a line, per-canary
costs, and ratios.

Every latency here is a difference of two wall-clock times taken in the benchmark process (the
change or the request just before it is sent; the watch event as it arrives), so both products are
timed by the same clock and the same watch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Series = list[tuple[float, Any]]
"""(time, value) in arrival order."""


def canary_weight_of(vs: Mapping[str, Any], name: str) -> int | None:
    """The weight of the ``<name>-canary`` destination in a VirtualService's first HTTP route
    (None when the object has no route to the canary yet)."""
    http = (vs.get("spec") or {}).get("http") or []
    if not http:
        return None
    for route in http[0].get("route") or []:
        host = str((route.get("destination") or {}).get("host", ""))
        # Flagger and Coalmine both write the short name; a FQDN means the same Service.
        if host == f"{name}-canary" or host.startswith(f"{name}-canary."):
            return int(route.get("weight") or 0)
    return None


def first_after(series: Series, since: float, test: Callable[[Any], bool]) -> float | None:
    """The first time at or after ``since`` whose value passes ``test``."""
    for when, value in series:
        if when >= since and test(value):
            return when
    return None


def increases(series: Series, start: float, stop: float) -> int:
    """How many times the value rose between ``start`` and ``stop`` (weight steps taken)."""
    count, last = 0, None
    for when, value in series:
        if value is None:
            continue
        if last is not None and value > last and start <= when <= stop:
            count += 1
        last = value
    return count


@dataclass
class Spread:
    """A handful of latencies (seconds): enough to read a median and a worst case."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def worst(self) -> float:
        return max(self.values) if self.values else float("nan")

    def text(self) -> str:
        if not self.values:
            return "no sample"
        n = len(self.values)
        return f"median {fmt_seconds(self.median)}, max {fmt_seconds(self.worst)} (n={n})"


def fmt_seconds(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def ratio(flagger: float, coalmine: float) -> float:
    """Flagger's figure over Coalmine's: above 1, Coalmine is faster or lighter by that factor."""
    if coalmine <= 0 or math.isnan(flagger) or math.isnan(coalmine):
        return float("nan")
    return flagger / coalmine


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 10:
        return f"{value:.0f}×"
    return f"{value:.2f}×" if value < 1 else f"{value:.1f}×"


@dataclass(frozen=True)
class Usage:
    """CPU seconds and resident memory of one set of processes, at one moment."""

    cpu: float
    rss_kb: int


@dataclass(frozen=True)
class Cost:
    """What N canaries cost a set of processes over a window."""

    canaries: int
    seconds: float
    cpu: float
    """CPU seconds used in the window."""
    rss_delta_kb: int
    """Resident memory at the window's end over the processes' baseline (no Canary yet)."""

    @classmethod
    def between(cls, canaries: int, seconds: float, base: Usage, start: Usage, end: Usage) -> Cost:
        return cls(canaries, seconds, end.cpu - start.cpu, end.rss_kb - base.rss_kb)

    @property
    def millicores_per_canary(self) -> float:
        if not self.canaries or self.seconds <= 0:
            return float("nan")
        return 1000 * self.cpu / self.seconds / self.canaries

    @property
    def kb_per_canary(self) -> float:
        return self.rss_delta_kb / self.canaries if self.canaries else float("nan")

    def text(self) -> str:
        return (
            f"{self.millicores_per_canary:.2f} millicores and {self.kb_per_canary:.0f} KB per "
            f"canary ({self.cpu:.2f} CPU-s in {self.seconds:.0f} s, "
            f"+{self.rss_delta_kb / 1024:.0f} MiB RSS)"
        )


def cpu_per_step_ms(cost: Cost, steps: int) -> float:
    return 1000 * cost.cpu / steps if steps else float("nan")


def summed(readings: Mapping[str, Usage], names: list[str]) -> Usage:
    """The usage of several processes together (Coalmine's worker and controller)."""
    return Usage(
        sum(readings[n].cpu for n in names),
        sum(readings[n].rss_kb for n in names),
    )
