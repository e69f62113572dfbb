"""What the report says in words: the key facts, the verdict line and the command to get it.

Shared by the PNG banner and the HTML page so both say the same thing the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from worker.report.model import Decisive, RolloutTimeline
from worker.report.series import Comparisons


@dataclass(frozen=True)
class Report:
    """Everything one report shows."""

    timeline: RolloutTimeline
    comparisons: Comparisons = field(default_factory=Comparisons)
    url: str = ""
    """The run's page in the Temporal Web UI."""
    generated: datetime | None = None


def stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def duration(seconds: float) -> str:
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def value_words(decisive: Decisive, *, strategy: str = "canary") -> str:
    """``69.17 (must be ≥ 99) at 30% canary, 11:41:19``."""
    parts: list[str] = []
    if decisive.value is not None and f"{decisive.value:g}" not in decisive.message:
        bounds = [
            f"≥ {decisive.min:g}" if decisive.min is not None else "",
            f"≤ {decisive.max:g}" if decisive.max is not None else "",
        ]
        wanted = " and ".join(b for b in bounds if b)
        parts.append(f"{decisive.value:g}" + (f" (must be {wanted})" if wanted else ""))
    if decisive.weight is not None and strategy == "ab-testing":
        parts.append("matched users on the canary" if decisive.weight else "before any traffic")
    elif decisive.weight is not None:
        parts.append(f"at {decisive.weight}% canary weight")
    if decisive.time is not None:
        parts.append(decisive.time.strftime("%H:%M:%S"))
    return ", ".join(parts)


def decisive_line(timeline: RolloutTimeline) -> str:
    """The decisive data point in one line, empty when nothing decided against the canary."""
    decisive = timeline.decisive
    if decisive is None:
        return ""
    head = decisive.message
    if decisive.kind == "metric" and decisive.name not in head:
        head = f"{decisive.name}: {head}"
    detail = value_words(decisive, strategy=timeline.strategy)
    return f"{head} — {detail}" if detail else head


def facts(report: Report, *, brief: bool = False) -> list[tuple[str, str]]:
    """(label, value) pairs: target, strategy, revision, who, when, how long, steps."""
    t = report.timeline
    end = t.ended or report.generated
    rows = [
        ("strategy", t.strategy),
        ("revision", t.revision or "-"),
        ("started", stamp(t.started)),
        ("took", duration((end - t.started).total_seconds()) if end else "-"),
        ("steps", str(t.steps)),
        ("max weight", f"{t.max_weight}%"),
        ("breached checks", str(sum(1 for c in t.checks if c.outcome == "breach"))),
    ]
    unjudged = sum(1 for c in t.checks if not c.passed and c.outcome != "breach")
    if unjudged:
        rows.append(("checks without data", str(unjudged)))
    if t.requested_by:
        by = t.requested_by + (f" ({t.reason})" if t.reason and not brief else "")
        # In the banner's one line it comes last: it is the part that may be cut.
        rows.insert(len(rows) if brief else 2, ("requested by", by))
    if not brief:
        rows = [
            ("rollout", f"{t.display} (cluster {t.cluster})"),
            ("workflow", f"{t.workflow_id} run {t.run_id}"),
            *rows,
            ("ended", stamp(t.ended) if t.ended else "still running"),
            ("operator actions", str(sum(1 for a in t.actions if a.via != "start"))),
        ]
    return rows
