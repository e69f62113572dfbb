"""The rollout's state: one ``RolloutStatus`` and the operator requests waiting to be honoured.

Every change goes through a method here, which also refreshes what the Web UI shows (search
attributes and the current-details table). Times come from ``workflow.now()`` — the time of the
workflow task, identical on replay — so the status is the same every time the history is replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from temporalio import workflow

from workflows import search
from workflows.model import (
    FailedCheck,
    MetricResult,
    OperatorAction,
    Phase,
    RolloutEvent,
    RolloutStatus,
)

MAX_EVENTS = 100
MAX_FAILED_CHECKS = 100
MAX_ACTIONS = 100

ActionName = Literal["start", "promote", "promote-full", "abort", "pause", "resume", "new-revision"]


@dataclass
class OperatorRequests:
    """What operators asked for and the main loop has not acted on yet."""

    promote: bool = False
    promote_full: bool = False
    abort_reason: str | None = None
    new_revision: str | None = None
    wake: bool = False
    """End the current wait early so the loop acts now; consumed by the wait it ends."""

    @property
    def pending(self) -> bool:
        """Whether a request waits for the loop (no continue-as-new before it is acted on)."""
        return self.wake or self.promote or self.new_revision is not None


@dataclass
class RolloutState:
    """The status plus the bookkeeping around it (search attributes already sent)."""

    status: RolloutStatus
    target: str
    requests: OperatorRequests = field(default_factory=OperatorRequests)
    upsert_search_attributes: bool = True
    weight_with_phase_only: bool = False
    """Upsert ``CanaryWeight`` only along with a phase change (not every step: an upsert is a
    billed action); the live weight is in the status query and on the Canary."""
    on_change: Callable[[], None] | None = None
    """Called after every change (the workflow keeps the Canary's status current with it)."""
    _sent_attributes: dict[str, str | int] = field(default_factory=dict)

    def _update(self, **changes: Any) -> None:
        # RolloutStatus is frozen: every change is a new object, so a query never sees half of one.
        self.status = self.status.model_copy(update=changes)
        self._publish()

    def _publish(self) -> None:
        if self.upsert_search_attributes:
            values = search.attribute_values(self.status, target=self.target)
            sent = self._sent_attributes
            phase = search.CANARY_PHASE.name
            if self.weight_with_phase_only and sent and values[phase] == sent.get(phase):
                values[search.CANARY_WEIGHT.name] = sent[search.CANARY_WEIGHT.name]
            updates = search.attribute_updates(values, self._sent_attributes)
            if updates:
                workflow.upsert_search_attributes(updates)
                self._sent_attributes = values
        workflow.set_current_details(details_table(self.status))
        if self.on_change is not None:
            self.on_change()

    def start(self) -> None:
        """Publish the initial status (search attributes and details) once the run begins."""
        self._publish()

    def set_phase(self, phase: Phase, message: str | None = None) -> None:
        changes: dict[str, Any] = {"phase": phase}
        if phase != self.status.phase:
            changes["last_transition_time"] = workflow.now()
        if message is not None:
            changes["message"] = message
        self._update(**changes)

    def set(self, **changes: Any) -> None:
        """Set plain fields (revision, weight, counters, paused, message)."""
        self._update(**changes)

    def record_metrics(self, results: list[MetricResult]) -> None:
        self._update(metrics={**self.status.metrics, **{r.name: r for r in results}})

    def add_failed_check(self, *, source: str, outcome: str, message: str) -> None:
        check = FailedCheck(
            time=workflow.now(),
            weight=self.status.canary_weight,
            source=source,
            outcome=outcome,
            message=message,
        )
        history = [*self.status.failed_check_history, check][-MAX_FAILED_CHECKS:]
        self._update(failed_check_history=history)

    def add_action(self, action: ActionName, *, identity: str, reason: str | None) -> None:
        entry = OperatorAction(time=workflow.now(), action=action, identity=identity, reason=reason)
        self._update(actions=[*self.status.actions, entry][-MAX_ACTIONS:])

    def add_event(
        self, *, reason: str, message: str, type: Literal["Normal", "Warning"] = "Normal"
    ) -> None:
        event = RolloutEvent(time=workflow.now(), type=type, reason=reason, message=message)
        self._update(events=[*self.status.events, event][-MAX_EVENTS:], message=message)


def details_table(status: RolloutStatus) -> str:
    """The markdown table shown as the workflow's current details in the Web UI."""
    rows = [
        ("phase", status.phase.value + (" (paused)" if status.paused else "")),
        ("revision", status.revision or "—"),
        ("canary weight", f"{status.canary_weight}%"),
        ("failed checks", str(status.failed_checks)),
        ("iterations", str(status.iterations)),
    ]
    if status.strategy:
        rows.insert(1, ("strategy", status.strategy))
    rows += [(f"metric {r.name}", r.message) for r in status.metrics.values()]
    if status.message:
        rows.append(("last event", status.message))
    lines = ["| | |", "|---|---|", *(f"| {k} | {v.replace('|', '/')} |" for k, v in rows)]
    return "\n".join(lines)
