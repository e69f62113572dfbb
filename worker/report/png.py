"""The report as one PNG: verdict and key facts on top, then the charts (readable at a glance).

Layout, top to bottom: a banner (outcome in its colour, the reason and the decisive data point,
who started it and when), the weight/iterations chart across the page, the metric checks two to
a row, the canary-versus-primary comparisons two to a row, and a footer with the Web UI link.
"""

from __future__ import annotations

import io
import math
from datetime import datetime
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from worker.report import charts
from worker.report.facts import Report, decisive_line, facts
from worker.report.model import Outcome
from worker.report.series import window

WIDTH = 14.0
BANNER = 1.5
WEIGHTS = 2.9
ROW = 2.5
FOOTER = 0.35
DPI = 100


def render_png(report: Report, now: datetime) -> bytes:
    """The composed figure as PNG bytes."""
    timeline = report.timeline
    metrics = timeline.metric_names()
    comparisons = report.comparisons.items
    check_rows = math.ceil(len(metrics) / 2)
    compare_rows = math.ceil(len(comparisons) / 2) if comparisons else 0
    footer = FOOTER * max(len(footer_lines(report)), 1)
    heights = [BANNER, WEIGHTS] + [ROW] * (check_rows + compare_rows) + [footer]
    figure = Figure(figsize=(WIDTH, sum(heights)), dpi=DPI, layout="constrained")
    grid = figure.add_gridspec(len(heights), 2, height_ratios=heights)
    _banner(figure.add_subplot(grid[0, :]), report)
    weights = figure.add_subplot(grid[1, :])
    charts.draw_weights(weights, timeline, now)
    weights.set_title("Traffic" + (" and iterations" if timeline.iterative else ""))
    row = 2
    for index, metric in enumerate(metrics):
        charts.draw_checks(figure.add_subplot(grid[row + index // 2, index % 2]), timeline, metric)
    row += check_rows
    for index, comparison in enumerate(comparisons):
        ax = figure.add_subplot(grid[row + index // 2, index % 2])
        charts.draw_comparison(ax, comparison, timeline, now)
    start, end = report.comparisons.start, report.comparisons.end
    if start is None or end is None:
        start, end = window(timeline, now)
    for ax in figure.axes[1:]:
        ax.set_xlim(charts.x(start), charts.x(end))  # one time axis for every chart
    _footer(figure.add_subplot(grid[-1, :]), report)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _write(ax: Axes, x: float, y: float, text: str, **style: Any) -> None:
    # Text never moves the charts: the layout engine ignores it (long lines are cut instead).
    ax.text(x, y, text, va="center", transform=ax.transAxes, **style).set_in_layout(False)


def _banner(ax: Axes, report: Report) -> None:
    ax.set_axis_off()
    timeline = report.timeline
    colour = charts.OUTCOME_COLOURS.get(timeline.outcome, charts.NO_DATA)
    ax.axvspan(0, 0.004, color=colour)
    ax.set_xlim(0, 1)
    title = f"{timeline.display}  {timeline.outcome.value.upper()}"
    _write(ax, 0.012, 0.83, title, fontsize=20, fontweight="bold", color=colour)
    why = timeline.message if timeline.outcome != Outcome.RUNNING else "analysis in progress"
    lines: list[tuple[str, dict[str, Any]]] = [(charts.short(why, 150), {"fontsize": 12})]
    decided = decisive_line(timeline)
    if decided:
        style: dict[str, Any] = {"fontsize": 12, "color": colour, "fontweight": "bold"}
        lines.append((charts.short(f"decided by: {decided}", 150), style))
    words = "   ·   ".join(f"{k} {v}" for k, v in facts(report, brief=True))
    lines.append((charts.short(words, 180), {"fontsize": 9.5, "color": "#3c4043"}))
    for index, (text, style) in enumerate(lines):
        _write(ax, 0.012, 0.55 - 0.23 * index, text, **style)


def footer_lines(report: Report) -> list[str]:
    lines = [f"Web UI: {report.url}"] if report.url else []
    return lines + [f"canary vs primary: {note}" for note in report.comparisons.notes]


def _footer(ax: Axes, report: Report) -> None:
    ax.set_axis_off()
    lines = footer_lines(report)
    for index, line in enumerate(lines):
        y = 1 - (index + 0.5) / max(len(lines), 1)
        _write(ax, 0.0, y, charts.short(line, 200), fontsize=9, color="#5f6368")
