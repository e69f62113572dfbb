"""How rollouts look in a terminal and in a CI log.

Two audiences: a person at a terminal gets a live line (phase, a weight bar, failed checks, the
last metric values) that redraws in place; a CI log (stdout is not a terminal) gets one plain line
per change and each new rollout event as Flagger prints it, so the log reads top to bottom.
``-o json`` output is the status model serialized by alias (Flagger's names) and is produced
elsewhere; nothing here is meant to be parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from worker.rollout_ops import ListedRollout
from workflows.model import MetricResult, Phase, RolloutEvent, RolloutStatus
from workflows.spec_strategy import Strategy

_PHASE_STYLE = {
    Phase.SUCCEEDED: "bold green",
    Phase.FAILED: "bold red",
    Phase.PROGRESSING: "cyan",
    Phase.WAITING_PROMOTION: "yellow",
    Phase.PROMOTING: "green",
    Phase.FINALISING: "green",
}


def fmt_time(value: datetime | None) -> str:
    """RFC 3339 in UTC, as kubectl prints Flagger's ``lastTransitionTime``."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_metric(metric: MetricResult) -> str:
    value = "no data" if metric.value is None else f"{metric.value:g}"
    return f"{metric.name}={value}"


def _strategy(status: RolloutStatus) -> Strategy | None:
    """The status's strategy; None in rollouts started before strategies were told apart."""
    try:
        return Strategy(status.strategy) if status.strategy else None
    except ValueError:  # a newer worker's strategy: shown by name, not understood
        return None


def strategy_text(status: RolloutStatus) -> str | None:
    """``A/B testing, iteration 2`` (``Canary`` for a weighted one); None when unknown."""
    strategy = _strategy(status)
    if strategy is None:
        return status.strategy
    if strategy.iterative:
        return f"{strategy.display_name}, iteration {status.iterations}"
    return strategy.display_name


def summary_line(status: RolloutStatus) -> str:
    """``Progressing weight=20 failedChecks=0 request-success-rate=99.5`` (one line, plain);
    ``strategy=ab-testing iterations=2`` after the checks once the rollout names its strategy."""
    parts = [
        status.phase.value + (" (paused)" if status.paused else ""),
        f"weight={status.canary_weight}",
        f"failedChecks={status.failed_checks}",
    ]
    if status.strategy:
        parts.append(f"strategy={status.strategy}")
        strategy = _strategy(status)
        if strategy is not None and strategy.iterative:
            parts.append(f"iterations={status.iterations}")
    parts.extend(fmt_metric(m) for m in status.metrics.values())
    return " ".join(parts)


def event_line(event: RolloutEvent) -> str:
    """An event as ``kubectl describe canary`` lists Flagger's: type, reason, message."""
    return f"{fmt_time(event.time)} {event.type:<7} {event.reason}: {event.message}"


class RolloutFollower:
    """Shows a rollout's statuses as they arrive: live on a terminal, plain lines otherwise."""

    def __init__(self, console: Console, *, live: bool | None = None) -> None:
        self._console = console
        self._live_enabled = console.is_terminal if live is None else live
        self._live: Live | None = None
        self._last_line: str | None = None
        self._seen_events: set[tuple[datetime, str, str]] = set()

    def __enter__(self) -> RolloutFollower:
        if self._live_enabled:
            self._live = Live(Text("waiting for the rollout…"), console=self._console)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def show(self, status: RolloutStatus) -> None:
        for event in status.events:
            key = (event.time, event.reason, event.message)
            if key not in self._seen_events:
                self._seen_events.add(key)
                self._print(event_line(event))
        if self._live is not None:
            self._live.update(live_panel(status))
            return
        line = summary_line(status)
        if line != self._last_line:
            self._last_line = line
            self._print(f"{fmt_time(datetime.now(UTC))} {line}")

    def note(self, message: str) -> None:
        self._print(message)

    def _print(self, message: str) -> None:
        # Plain text, never markup: messages come from the cluster and may contain brackets.
        target = self._live.console if self._live is not None else self._console
        target.print(Text(message), soft_wrap=True)


def live_panel(status: RolloutStatus) -> Group:
    """The live line: phase, weight bar, failed checks; the metric values beneath."""
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        Text(f"{status.name}.{status.namespace}", style="bold"),
        Text(
            status.phase.value + (" (paused)" if status.paused else ""),
            style=_PHASE_STYLE.get(status.phase, ""),
        ),
        ProgressBar(total=100, completed=status.canary_weight, width=30),
        Text(f"{status.canary_weight:>3}%"),
        Text(f"failed checks {status.failed_checks}", style="red" if status.failed_checks else ""),
    )
    metrics = "  ".join(fmt_metric(m) for m in status.metrics.values())
    rows: list[Table | Text] = [grid]
    strategy = strategy_text(status)
    if strategy:
        rows.append(Text(strategy, style="bold"))
    if metrics:
        rows.append(Text(metrics, style="dim"))
    if status.message:
        rows.append(Text(status.message, style="dim"))
    return Group(*rows)


def status_table(status: RolloutStatus) -> Group:
    """``coalmine rollout status``: the status, its metrics, failed checks and actions."""
    head = Table.grid(padding=(0, 2))
    head.add_row("Rollout", f"{status.name}.{status.namespace} (cluster {status.cluster})")
    head.add_row(
        "Phase",
        Text(
            status.phase.value + (" (paused)" if status.paused else ""),
            style=_PHASE_STYLE.get(status.phase, ""),
        ),
    )
    head.add_row("Weight", f"{status.canary_weight}%")
    head.add_row("Failed checks", str(status.failed_checks))
    head.add_row("Iterations", str(status.iterations))
    known = _strategy(status)
    if known is not None:
        head.add_row("Strategy", f"{known.display_name} ({known.value})")
    elif status.strategy:
        head.add_row("Strategy", status.strategy)
    head.add_row("Revision", status.revision or "-")
    head.add_row("Last transition", fmt_time(status.last_transition_time))
    if status.message:
        head.add_row("Message", Text(status.message))
    parts: list[Table] = [head]
    if status.metrics:
        table = _titled("Metrics", "METRIC", "VALUE", "MIN", "MAX", "RESULT")
        for m in status.metrics.values():
            table.add_row(m.name, _num(m.value), _num(m.min), _num(m.max), Text(m.message))
        parts.append(table)
    if status.failed_check_history:
        table = _titled("Failed checks", "TIME", "WEIGHT", "CHECK", "REASON")
        for f in status.failed_check_history:
            table.add_row(fmt_time(f.time), str(f.weight), f.source, Text(f.message))
        parts.append(table)
    if status.actions:
        table = _titled("Actions", "TIME", "ACTION", "WHO", "WHY")
        for a in status.actions:
            table.add_row(fmt_time(a.time), a.action, Text(a.identity), Text(a.reason or ""))
        parts.append(table)
    return Group(*parts)


def list_table(rows: Sequence[ListedRollout]) -> Table:
    """Columns as ``kubectl get canaries`` (NAMESPACE NAME STATUS WEIGHT LASTTRANSITIONTIME),
    then the strategy ("-" for rollouts started before it was recorded)."""
    table = Table(
        "NAMESPACE", "NAME", "STATUS", "WEIGHT", "LASTTRANSITIONTIME", "STRATEGY", box=None
    )
    for row in rows:
        table.add_row(
            row.namespace,
            row.name,
            row.status,
            str(row.weight),
            fmt_time(row.last_transition_time),
            row.strategy or "-",
        )
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _titled(title: str, *columns: str) -> Table:
    return Table(*columns, title=title, title_justify="left")
