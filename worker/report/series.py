"""The canary beside the primary: the builtin metrics of both workloads over the whole rollout.

A check judges the canary alone at each step against a fixed threshold, so a regression that
stays under it (p99 from 40 ms to 300 ms under 500 ms) passes unseen. The report draws the same
builtin query for the canary's workload (the target) and the primary's (``<target>-primary``)
as Prometheus range queries over the rollout, so the gap shows whatever the threshold.

What to measure is the Canary's traffic router's (`activities.router.registry`, the queries the
checks run), how to query is the project's one Prometheus client (`PrometheusProvider`); this
module only picks the window and the step. Prometheus being unreachable or empty is a note in
the report, never a failed report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from activities.analysis.metrics.credentials import Credentials
from activities.analysis.metrics.prometheus import PrometheusProvider, RangeSeries
from activities.analysis.templates import TemplateModel, render
from activities.errors import ConfigurationError, InvalidSpec, ProviderError
from activities.router.registry import resolve
from worker.report.model import MetricBand, RolloutTimeline
from workflows.providers import DEFAULT_PROVIDER

MAX_POINTS = 240
"""Points per series: enough for a smooth line, few enough for a small page."""

MIN_STEP_SECONDS = 1.0


@dataclass(frozen=True)
class Comparison:
    """One builtin metric of both workloads over the rollout."""

    metric: str
    canary: list[tuple[datetime, float]]
    primary: list[tuple[datetime, float]]
    min: float | None = None
    max: float | None = None
    unit: str = ""


@dataclass(frozen=True)
class Comparisons:
    """Every compared metric, and why any is missing."""

    items: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None


def window(timeline: RolloutTimeline, now: datetime) -> tuple[datetime, datetime]:
    """From a little before the rollout started to a little after it ended (or now)."""
    end = timeline.ended or now
    span = max((end - timeline.started).total_seconds(), 60.0)
    margin = timedelta(seconds=span * 0.05)
    return timeline.started - margin, end + margin


def step_for(start: datetime, end: datetime) -> float:
    return max(MIN_STEP_SECONDS, round((end - start).total_seconds() / MAX_POINTS, 3))


def _unit(metric: str) -> str:
    return {"request-success-rate": "%", "request-duration": "ms"}.get(metric, "")


def _samples(series: list[RangeSeries]) -> list[tuple[datetime, float]]:
    # The builtin queries aggregate to one series; should a template not, keep the first.
    return series[0].samples if series else []


def compare(
    timeline: RolloutTimeline,
    *,
    prometheus_url: str | None,
    now: datetime,
    credentials: Credentials | None = None,
) -> Comparisons:
    """Range queries of the builtin metrics for the canary and the primary (blocking I/O)."""
    canary = timeline.canary
    if canary is None:
        return Comparisons(notes=["the rollout's Canary could not be read from its history"])
    if not prometheus_url:
        return Comparisons(notes=["no Prometheus address (set PROMETHEUS_URL or --prometheus-url)"])
    try:
        router = resolve(canary.spec.provider, DEFAULT_PROVIDER)
        provider = PrometheusProvider(address=prometheus_url, credentials=credentials)
    except (ConfigurationError, InvalidSpec) as err:
        return Comparisons(notes=[str(err)])
    start, end = window(timeline, now)
    step = step_for(start, end)
    bands = {band.name: band for band in timeline.metrics}
    target = canary.spec.target_ref.name
    items: list[Comparison] = []
    notes: list[str] = []
    for metric, template in router.queries.items():
        band = bands.get(metric) or MetricBand(metric, None, None, "1m", builtin=True)
        queries = {
            who: render(
                template,
                TemplateModel(
                    name=canary.name,
                    namespace=canary.namespace,
                    target=workload,
                    service=canary.service_name,
                    interval=band.interval,
                ),
            )
            for who, workload in (("canary", target), ("primary", f"{target}-primary"))
        }
        try:
            got = {
                who: _samples(
                    provider.run_range_query(query, start=start, end=end, step_seconds=step)
                )
                for who, query in queries.items()
            }
        except ProviderError as err:
            notes.append(f"{metric}: {err}")
            continue
        if not got["canary"] and not got["primary"]:
            notes.append(f"{metric}: Prometheus holds no samples of either workload")
        items.append(
            Comparison(metric, got["canary"], got["primary"], band.min, band.max, _unit(metric))
        )
    return Comparisons(items=items, notes=notes, start=start, end=end)
