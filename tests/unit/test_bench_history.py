"""The benchmarks' reading of a history: a step's weight change whether it is an activity or,
since the ``local-advance`` patch, a local activity's marker (tests/replay/histories)."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory

from bench._support import History, parse_history, steps

HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"


def _parsed(name: str) -> History:
    history = WorkflowHistory.from_json("canary/x", (HISTORIES / f"{name}.json").read_text())
    return parse_history(list(history.events))


def test_a_local_advance_is_read_from_its_marker_as_a_local_activity() -> None:
    history = _parsed("local_advance")
    advances = [a for a in history.activities if a.name == "advance"]
    assert [a.input["canary"] for a in advances] == [10, 20, 30, 40, 50]
    assert all(a.local for a in advances)
    assert [s.weight for s in steps(history)] == [10, 20, 30, 40, 50]


def test_an_advance_activity_is_not_local() -> None:
    history = _parsed("three_action_step")
    advances = [a for a in history.activities if a.name == "advance"]
    assert [a.input["canary"] for a in advances] == [10, 20, 30, 40, 50]
    assert not any(a.local for a in advances)
