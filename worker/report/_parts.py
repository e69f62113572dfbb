"""Small readers the timeline uses: event kinds from Flagger's wording, pauses, judgements.

Pure functions of plain values, kept apart from the history walk in `worker.report.timeline`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from worker.report import _payloads as p
from worker.report.model import Action, Judgement, MetricBand, Pause
from workflows.decisions import metric_bounds
from workflows.spec import Canary

# Flagger's fixed wording tells an event's reason and kind (a summary carries only the message).
_EVENT_KINDS: tuple[tuple[str, str, str], ...] = (
    ("Halt ", "Halt", "Warning"),
    ("Rolling back ", "Rollback", "Warning"),
    ("Canary failed!", "Failed", "Warning"),
    ("Post-rollout hook", "PostRollout", "Warning"),
    ("Advance ", "Advance", "Normal"),
    ("New revision detected", "NewRevision", "Normal"),
    ("Scaling up", "Scaling", "Normal"),
    ("Starting canary analysis", "Analysis", "Normal"),
    ("Copying ", "Promoting", "Normal"),
    ("Promotion completed!", "Promoted", "Normal"),
    ("Start traffic mirroring", "Mirroring", "Normal"),
    ("Routing all traffic", "Advance", "Normal"),
    ("Stop traffic mirroring", "Advance", "Normal"),
    ("Initialization done!", "Synced", "Normal"),
    ("No new revision", "Synced", "Normal"),
)


def event_kind(message: str) -> tuple[str, str]:
    """(reason, type) of an event from its message, as the workflow words them."""
    if " waiting for " in message and message.startswith("Halt "):
        return "Waiting", "Warning"
    for prefix, reason, kind in _EVENT_KINDS:
        if message.startswith(prefix):
            return reason, kind
    return "Event", "Normal"


def bands(canary: Canary | None) -> Iterable[MetricBand]:
    if canary is None:
        return
    for metric in canary.spec.analysis.metrics:
        low, high = metric_bounds(metric)
        builtin = metric.template_ref is None and not metric.query
        yield MetricBand(metric.name, low, high, metric.interval, builtin)


def pauses(actions: Sequence[Action], ended: datetime | None) -> Iterable[Pause]:
    opened: Action | None = None
    for action in actions:
        if action.action == "pause" and opened is None:
            opened = action
        elif opened is not None and action.action in ("resume", "promote", "promote-full", "abort"):
            yield Pause(opened.time, action.time, opened.identity, opened.reason)
            opened = None
    if opened is not None:
        yield Pause(opened.time, ended, opened.identity, opened.reason)


def judgement(data: Any) -> Judgement | None:
    if not isinstance(data, dict) or not p.get(data, "verdict"):
        return None
    n_canary, n_primary = p.get(data, "canary_n"), p.get(data, "primary_n")
    return Judgement(
        verdict=p.text(p.get(data, "verdict")),
        p_value=p.number(p.get(data, "p_value")),
        shift=p.number(p.get(data, "shift")),
        ci_low=p.number(p.get(data, "ci_low")),
        ci_high=p.number(p.get(data, "ci_high")),
        canary_n=p.integer(n_canary) if n_canary is not None else None,
        primary_n=p.integer(n_primary) if n_primary is not None else None,
        canary_median=p.number(p.get(data, "canary_median")),
        primary_median=p.number(p.get(data, "primary_median")),
        reason=p.text(p.get(data, "reason")),
    )
