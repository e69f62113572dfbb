"""The report's charts, drawn with matplotlib on axes the caller lays out (PNG page or SVG each).

Colours say one thing each, everywhere: the canary orange, the primary blue, a passing check
green, a breach red, what is allowed a pale green band and what is not a pale red one; pauses
are grey, operator actions purple. Times are UTC wall-clock on the x axis.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the report is written to files

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from worker.report.model import CheckPoint, Outcome, RolloutTimeline
from worker.report.series import Comparison

CANARY = "#e8710a"
PRIMARY = "#1a73e8"
PASS = "#1e8e3e"
BREACH = "#d93025"
NO_DATA = "#80868b"
PAUSE = "#9aa0a6"
ACTION = "#8e24aa"
ALLOWED = "#e6f4ea"
FORBIDDEN = "#fce8e6"
OUTCOME_COLOURS = {Outcome.PROMOTED: PASS, Outcome.ROLLED_BACK: BREACH}

matplotlib.rcParams.update(
    {
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#e8eaed",
        "grid.linewidth": 0.8,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "svg.fonttype": "none",  # text stays text in the HTML page (selectable, small)
    }
)


def x(moment: datetime) -> float:
    """A time as matplotlib's date number (what its axes are typed for)."""
    return float(mdates.date2num(moment))  # type: ignore[no-untyped-call]


def xs(moments: Sequence[datetime]) -> list[float]:
    return [x(m) for m in moments]


def _time_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]


def _end(timeline: RolloutTimeline, now: datetime) -> datetime:
    return timeline.ended or now


def _steps(timeline: RolloutTimeline, now: datetime) -> tuple[list[datetime], list[int]]:
    times, values = [timeline.started], [0]
    for change in timeline.weights:
        times.append(change.time)
        values.append(change.canary)
    times.append(_end(timeline, now))
    values.append(values[-1])
    return times, values


def draw_weights(ax: Axes, timeline: RolloutTimeline, now: datetime) -> None:
    """The canary's traffic share as a step chart; pauses, operator actions and the outcome."""
    times, values = _steps(timeline, now)
    label = (
        "matched users on the canary %" if timeline.strategy == "ab-testing" else "canary weight %"
    )
    ax.step(xs(times), values, where="post", color=CANARY, linewidth=2.2, label=label)
    ax.fill_between(xs(times), values, step="post", color=CANARY, alpha=0.12)
    for change in timeline.weights:
        if change.mirrored:
            ax.annotate("mirrored", (x(change.time), 2), fontsize=8, color=CANARY, rotation=90)
    top = max(100, *values)
    ax.set_ylim(0, top * 1.32)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_ylabel("traffic to canary (%)")
    for index, pause in enumerate(timeline.pauses):
        ax.axvspan(
            x(pause.start),
            x(pause.end or _end(timeline, now)),
            color=PAUSE,
            alpha=0.3,
            lw=0,
            label=None if index else "paused",
        )
    _actions(ax, timeline, top, now)
    _warnings(ax, timeline)
    handles, labels = ax.get_legend_handles_labels()
    if timeline.iterative:
        twin_handles, twin_labels = _iterations(ax, timeline, now)
        handles, labels = handles + twin_handles, labels + twin_labels
    _outcome(ax, timeline, now, top)
    # Above the plot, right of the title: the action labels live at the top of the plot.
    ax.legend(handles, labels, loc="lower right", bbox_to_anchor=(1, 1), ncols=4)
    _time_axis(ax)


def _actions(ax: Axes, timeline: RolloutTimeline, top: float, now: datetime) -> None:
    shown = [a for a in timeline.actions if a.via != "start"]
    span = max((_end(timeline, now) - timeline.started).total_seconds(), 1.0)
    for index, action in enumerate(shown):
        ax.axvline(x(action.time), color=ACTION, linestyle=":", linewidth=1.4)
        words = f"{action.action} · {action.identity}"
        if action.reason:
            words += f": {short(action.reason, 34)}"
        level = top * (1.24 - 0.09 * (index % 3))  # staggered: neighbours do not overlap
        # Labels late in the rollout go left of their line, so none runs off the chart.
        late = (action.time - timeline.started).total_seconds() / span > 0.7
        ax.annotate(
            words,
            (x(action.time), level),
            fontsize=8,
            color=ACTION,
            xytext=(-3 if late else 3, 0),
            textcoords="offset points",
            va="center",
            ha="right" if late else "left",
        ).set_in_layout(False)


def _warnings(ax: Axes, timeline: RolloutTimeline) -> None:
    halts = [e.time for e in timeline.events if e.reason == "Halt"]
    if halts:
        ax.plot(
            xs(halts),
            [1.5] * len(halts),
            "|",
            color=BREACH,
            markersize=14,
            mew=2.2,
            label="failed check (Halt)",
        )


def _iterations(ax: Axes, timeline: RolloutTimeline, now: datetime) -> tuple[list[Any], list[str]]:
    twin = ax.twinx()
    times = [timeline.started] + [i.time for i in timeline.iterations] + [_end(timeline, now)]
    counts = [0] + [i.number for i in timeline.iterations]
    counts.append(counts[-1])
    wanted = next((i.wanted for i in timeline.iterations if i.wanted), None) or max(counts) or 1
    twin.step(
        xs(times),
        counts,
        where="post",
        color="#5f6368",
        linewidth=1.6,
        linestyle="--",
        label="iterations",
    )
    twin.set_ylim(0, wanted * 1.32)
    twin.yaxis.set_major_locator(MaxNLocator(integer=True))
    twin.set_ylabel(f"iterations (of {wanted})")
    twin.spines["right"].set_visible(True)
    twin.grid(False)
    return twin.get_legend_handles_labels()


def _outcome(ax: Axes, timeline: RolloutTimeline, now: datetime, top: float) -> None:
    end = _end(timeline, now)
    colour = OUTCOME_COLOURS.get(timeline.outcome, NO_DATA)
    ax.axvline(x(end), color=colour, linewidth=2)
    ax.annotate(
        timeline.outcome.value.upper(),
        (x(end), top * 1.02),
        color=colour,
        fontsize=10,
        fontweight="bold",
        ha="right",
        xytext=(-4, 0),
        textcoords="offset points",
    ).set_in_layout(False)


def _band(ax: Axes, low: float | None, high: float | None, lo: float, hi: float) -> None:
    """Allowed range pale green, the rest pale red, the bounds dashed."""
    if low is None and high is None:
        return
    allowed_lo = low if low is not None else lo
    allowed_hi = high if high is not None else hi
    ax.axhspan(allowed_lo, allowed_hi, color=ALLOWED, zorder=0, lw=0)
    if low is not None:
        ax.axhspan(lo, low, color=FORBIDDEN, zorder=0, lw=0)
        ax.axhline(low, color=BREACH, linestyle="--", linewidth=1.2)
    if high is not None:
        ax.axhspan(high, hi, color=FORBIDDEN, zorder=0, lw=0)
        ax.axhline(high, color=BREACH, linestyle="--", linewidth=1.2)


def _limits(values: Sequence[float], low: float | None, high: float | None) -> tuple[float, float]:
    points = [*values, *(b for b in (low, high) if b is not None)] or [0.0, 1.0]
    lo, hi = min(points), max(points)
    pad = (hi - lo) * 0.25 or max(abs(hi) * 0.1, 1.0)
    return lo - pad, hi + pad


def draw_checks(ax: Axes, timeline: RolloutTimeline, metric: str) -> None:
    """One metric's value at every step against its threshold range; breaches marked."""
    checks = timeline.checks_of(metric)
    band = next((m for m in timeline.metrics if m.name == metric), None)
    low = band.min if band else next((c.min for c in checks if c.min is not None), None)
    high = band.max if band else next((c.max for c in checks if c.max is not None), None)
    valued = [(c, c.value) for c in checks if c.value is not None]
    lo, hi = _limits([v for _, v in valued], low, high)
    _band(ax, low, high, lo, hi)
    if valued:
        ax.plot(
            xs([c.time for c, _ in valued]),
            [v for _, v in valued],
            color="#3c4043",
            linewidth=1,
            alpha=0.6,
            zorder=2,
        )
    ok = [(c.time, v) for c, v in valued if c.passed]
    bad = [(c.time, v) for c, v in valued if not c.passed]
    ax.scatter(
        xs([t for t, _ in ok]), [v for _, v in ok], color=PASS, s=36, zorder=3, label="passed"
    )
    ax.scatter(
        xs([t for t, _ in bad]),
        [v for _, v in bad],
        color=BREACH,
        marker="X",
        s=90,
        zorder=4,
        label="breach",
    )
    missing = [c for c in checks if c.value is None]
    if missing:
        ax.scatter(
            xs([c.time for c in missing]),
            [lo + (hi - lo) * 0.08] * len(missing),
            facecolors="none",
            edgecolors=NO_DATA,
            s=50,
            zorder=3,
            label="no data / error",
        )
    _judgements(ax, checks, hi, lo)
    ax.set_ylim(lo, hi)
    ax.set_title(f"check {metric}{_range_words(low, high)}")
    ax.legend(loc="best", ncols=3)
    _time_axis(ax)


def _judgements(ax: Axes, checks: Sequence[CheckPoint], hi: float, lo: float) -> None:
    for check in checks:
        judged = check.judgement
        if judged is None:
            continue
        colour = PASS if judged.passed else (NO_DATA if judged.verdict == "NoData" else BREACH)
        ax.annotate(
            judged.verdict,
            (x(check.time), hi - (hi - lo) * 0.08),
            fontsize=7,
            color=colour,
            ha="center",
            fontweight="bold",
        )


def _range_words(low: float | None, high: float | None) -> str:
    parts = [f"≥ {low:g}" if low is not None else "", f"≤ {high:g}" if high is not None else ""]
    words = " and ".join(p for p in parts if p)
    return f" (must be {words})" if words else ""


def draw_comparison(
    ax: Axes, comparison: Comparison, timeline: RolloutTimeline, now: datetime
) -> None:
    """The canary beside the primary for one builtin metric over the rollout."""
    values = [v for _, v in comparison.canary] + [v for _, v in comparison.primary]
    # The data sets the scale: a threshold far from both lines (500 ms over 1 ms answers) would
    # flatten them and hide the very gap this chart is for; it is named instead.
    near = [b for b in (comparison.min, comparison.max) if b is not None and _near(b, values)]
    far = [b for b in (comparison.min, comparison.max) if b is not None and b not in near]
    lo, hi = _limits([*values, *near], None, None)
    for bound in near:
        ax.axhline(bound, color=BREACH, linestyle="--", linewidth=1.1, label="threshold")
    if far:
        words = ", ".join(f"{b:g}" for b in far)
        ax.text(
            0.99,
            0.04,
            f"threshold {words} is off the scale",
            transform=ax.transAxes,
            ha="right",
            fontsize=8,
            color=BREACH,
        )
    ax.axvspan(x(timeline.started), x(_end(timeline, now)), color="#f1f3f4", zorder=0, lw=0)
    if comparison.primary:
        # Wider and beneath: where both agree, the primary shows around the canary's line.
        ax.plot(*_line(comparison.primary), color=PRIMARY, linewidth=4, alpha=0.7, label="primary")
    if comparison.canary:
        ax.plot(*_line(comparison.canary), color=CANARY, linewidth=2, label="canary")
    if not values:
        ax.text(
            0.5, 0.5, "no samples in Prometheus", transform=ax.transAxes, ha="center", color=NO_DATA
        )
    ax.set_ylim(lo, hi)
    unit = f" ({comparison.unit})" if comparison.unit else ""
    ax.set_title(f"{comparison.metric}{unit}: canary vs primary")
    ax.legend(loc="best", ncols=3)
    _time_axis(ax)


def _near(bound: float, values: Sequence[float]) -> bool:
    if not values:
        return True
    lo, hi = min(values), max(values)
    reach = max(hi - lo, abs(hi), abs(lo)) * 2
    return lo - reach <= bound <= hi + reach


def _line(samples: Sequence[tuple[datetime, float]]) -> tuple[list[float], list[float]]:
    return xs([t for t, _ in samples]), [v for _, v in samples]


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg_of(draw: Callable[[Axes], None], *, width: float = 10, height: float = 3.2) -> str:
    """One chart as an inline SVG element (for the HTML page)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    draw(figure.add_subplot())
    buffer = io.StringIO()
    # No RDF metadata block (creator, date): the page stays small and names no outside URL.
    quiet = {"Creator": None, "Date": None, "Format": None, "Type": None}
    figure.savefig(buffer, format="svg", metadata=quiet)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue and doctype: inline element
