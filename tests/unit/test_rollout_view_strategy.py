"""The rollout's strategy and iterations in ``rollout status`` and ``rollout watch``."""

from __future__ import annotations

import io

from rich.console import Console

from worker.rollout_view import RolloutFollower, status_table, strategy_text, summary_line
from workflows.model import Phase, RolloutStatus


def _status(strategy: str | None, iterations: int = 0) -> RolloutStatus:
    return RolloutStatus(
        name="podinfo",
        namespace="test",
        phase=Phase.PROGRESSING,
        strategy=strategy,
        iterations=iterations,
    )


def _render(renderable: object, *, terminal: bool = False) -> str:
    out = io.StringIO()
    Console(file=out, width=160, force_terminal=terminal).print(renderable)
    return out.getvalue()


def test_watch_lines_name_the_strategy_and_count_iterations() -> None:
    assert summary_line(_status("ab-testing", 2)) == (
        "Progressing weight=0 failedChecks=0 strategy=ab-testing iterations=2"
    )
    assert summary_line(_status("blue-green-mirroring", 1)).endswith(
        "strategy=blue-green-mirroring iterations=1"
    )
    # A weighted canary counts no iterations; a rollout from before strategies names none.
    assert summary_line(_status("canary")).endswith("failedChecks=0 strategy=canary")
    assert "strategy" not in summary_line(_status(None))
    # A strategy this CLI does not know (a newer worker's) is shown by name.
    assert strategy_text(_status("progressive-magic")) == "progressive-magic"


def test_the_live_line_and_the_status_table_show_it() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with RolloutFollower(console) as view:
        view.show(_status("ab-testing", 3))
    assert "A/B testing, iteration 3" in out.getvalue()
    table = _render(status_table(_status("blue-green", 4)))
    assert "Blue/Green (blue-green)" in table
    assert "Iterations" in table
    assert "4" in table
    assert "Strategy" not in _render(status_table(_status(None)))
