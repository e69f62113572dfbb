"""How a rollout looks: a live line on a terminal, one plain line per change in a CI log."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from worker.rollout_view import RolloutFollower, status_table, summary_line
from workflows.model import (
    CheckOutcome,
    MetricResult,
    OperatorAction,
    Phase,
    RolloutEvent,
    RolloutStatus,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _status(weight: int, *, events: int = 1, phase: Phase = Phase.PROGRESSING) -> RolloutStatus:
    return RolloutStatus(
        name="podinfo",
        namespace="test",
        phase=phase,
        canary_weight=weight,
        failed_checks=1,
        metrics={
            "request-success-rate": MetricResult(
                name="request-success-rate", value=99.5, outcome=CheckOutcome.OK, message="ok"
            )
        },
        events=[
            RolloutEvent(
                time=T0, reason="Advance", message=f"Advance podinfo.test canary weight [{i}]"
            )
            for i in range(events)
        ],
        actions=[OperatorAction(time=T0, action="pause", identity="ana@laptop", reason="lunch")],
    )


def test_plain_lines_only_on_change_and_each_event_once() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)
    with RolloutFollower(console) as view:
        view.show(_status(10))
        view.show(_status(10))  # nothing new: nothing printed
        view.show(_status(20, events=2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert (
        lines[0] == "2026-11-26T10:00:00Z Normal  Advance: Advance podinfo.test canary weight [0]"
    )
    assert lines[1].endswith("Progressing weight=10 failedChecks=1 request-success-rate=99.5")
    assert "[1]" in lines[2]  # brackets are text, not markup
    assert lines[3].endswith("weight=20 failedChecks=1 request-success-rate=99.5")


def test_live_line_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with RolloutFollower(console) as view:
        view.show(_status(30))
    text = out.getvalue()
    assert "\x1b[" in text  # redrawn in place
    assert "podinfo.test" in text
    assert " 30%" in text
    assert "failed checks 1" in text


def test_summary_line_marks_a_pause() -> None:
    status = _status(40).model_copy(update={"paused": True})
    assert summary_line(status).startswith("Progressing (paused) weight=40")


def test_status_table_shows_metrics_and_actions() -> None:
    out = io.StringIO()
    Console(file=out, width=100).print(status_table(_status(50)))
    text = out.getvalue()
    assert "request-success-rate" in text
    assert "ana@laptop" in text
    assert "lunch" in text
