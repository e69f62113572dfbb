"""A rollout's history → `RolloutTimeline`: a pure function of the recorded events.

What each part of the report comes from:

- weights: the input of every completed ``set_weights`` (or ``advance``) activity, at the time
  it completed; iterations: the "canary iteration n/m" events;
- metric checks: ``check_metric`` activities (one per check; the checks scheduled by one
  workflow task are one step) or one ``analyse_step`` activity per step, whose result is
  ``{"metrics": [...], "webhooks": [...]}``. Both shapes stay readable: old histories are kept;
- webhooks: ``call_webhook`` activities and the webhooks of ``analyse_step``;
- operator actions: accepted updates and received signals (their requests carry identity and
  reason), and who started the rollout (the input's ``requestedBy``); pauses run from a pause
  to the next resume, promote or abort;
- events: the ``record_event`` local activities' summaries ("event: <message>", cut at 120
  characters), or the event an ``advance`` carries in full; kinds and reasons follow Flagger's
  fixed wording;
- the verdict: the workflow's result or failure (the rollback reason), and the decisive data
  point behind it.

A rollout continued as new spans several runs: pass their histories oldest first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from worker.report import _payloads as p
from worker.report._parts import bands, event_kind, judgement, pauses
from worker.report.model import (
    Action,
    CheckPoint,
    Event,
    Iteration,
    Outcome,
    RolloutTimeline,
    WebhookCall,
    WeightChange,
)
from worker.report.verdict import decisive_of
from workflows.decisions import metric_bounds
from workflows.spec import Canary

_ITERATION = re.compile(r"canary iteration (\d+)/(\d+)")
_EVENT_PREFIX = "event: "
_ACTIONS = {"promote", "abort", "pause", "resume", "new_revision"}


@dataclass
class _Scheduled:
    name: str
    input: Any
    time: datetime
    task: int


@dataclass
class _Reader:
    """Walks the events of one or more runs, collecting what the report shows."""

    workflow_id: str
    run_ids: list[str] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)
    canary: Canary | None = None
    started: datetime | None = None
    ended: datetime | None = None
    outcome: Outcome = Outcome.RUNNING
    message: str = ""
    revision: str | None = None
    announced: str | None = None
    weight: int = 0
    step: int = 0
    step_task: int | None = None
    scheduled: dict[int, _Scheduled] = field(default_factory=dict)
    weights: list[WeightChange] = field(default_factory=list)
    iterations: list[Iteration] = field(default_factory=list)
    checks: list[CheckPoint] = field(default_factory=list)
    webhooks: list[WebhookCall] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    # --- the walk ------------------------------------------------------------------------

    def read(self, history: WorkflowHistory) -> None:
        self.run_ids.append(history.run_id)
        for event in history.events:
            self._one(event)

    def _one(self, event: HistoryEvent) -> None:
        kind, time = event.event_type, p.when(event.event_time)
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            self._started(event, time)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled = event.activity_task_scheduled_event_attributes
            self.scheduled[event.event_id] = _Scheduled(
                scheduled.activity_type.name,
                p.first(scheduled.input),
                time,
                scheduled.workflow_task_completed_event_id,
            )
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            self._completed(completed.scheduled_event_id, p.first(completed.result), time)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failed = event.activity_task_failed_event_attributes
            self._failed(failed.scheduled_event_id, failed.failure.message, time)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            timed_out = event.activity_task_timed_out_event_attributes
            self._failed(timed_out.scheduled_event_id, "timed out", time)
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            local = p.local_activity(event.marker_recorded_event_attributes)
            if local is not None and local[0] == "advance":
                # The step's weight change as a local activity: its result says what it did.
                self._weights(p.get(local[1], "weights"), time)
                self._advance_event(p.get(local[1], "event"), time)
                return
            message = p.summary(event.user_metadata.summary)
            if message.startswith(_EVENT_PREFIX):
                self._event(message[len(_EVENT_PREFIX) :], time)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            self._action(request.input.name, p.first(request.input.args), time, via="update")
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signal = event.workflow_execution_signaled_event_attributes
            self._action(signal.signal_name, p.first(signal.input), time, via="signal")
        else:
            self._closed(event, time)

    def _started(self, event: HistoryEvent, time: datetime) -> None:
        attrs = event.workflow_execution_started_event_attributes
        data = p.first(attrs.input)
        if not isinstance(data, dict):
            return
        if self.started is None:
            self.started = time
            self.input = data
            self.revision = p.get(data, "revision") or None
            try:
                self.canary = Canary.model_validate(p.get(data, "canary"))
            except ValueError:
                self.canary = None
            who = p.get(data, "requested_by")
            if who and p.get(data, "status") is None:
                self.actions.append(
                    Action(time, "start", str(who), p.get(data, "reason"), via="start")
                )
        status = p.get(data, "status")
        if isinstance(status, dict):  # continued as new: the weight goes on from the status
            self.weight = p.integer(p.get(status, "canary_weight"), self.weight)

    def _closed(self, event: HistoryEvent, time: datetime) -> None:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            result = p.first(event.workflow_execution_completed_event_attributes.result)
            self.message = p.text(p.get(result, "message"))
            nothing = self.message.startswith(("Initialization done", "No new revision"))
            self.outcome = Outcome.NOTHING_TO_ROLL_OUT if nothing else Outcome.PROMOTED
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            self.outcome = Outcome.ROLLED_BACK
            self.message = event.workflow_execution_failed_event_attributes.failure.message
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            self.outcome, self.message = Outcome.CANCELLED, "cancelled"
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            reason = event.workflow_execution_terminated_event_attributes.reason
            self.outcome = Outcome.TERMINATED
            self.message = f"terminated: {reason}" if reason else "terminated (no rollback ran)"
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            self.outcome, self.message = Outcome.TIMED_OUT, "timed out"
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            self.outcome, self.message = Outcome.CONTINUED, "continued as new"
        else:
            return
        self.ended = time

    # --- activities ------------------------------------------------------------------------

    def _completed(self, scheduled_id: int, result: Any, time: datetime) -> None:
        call = self.scheduled.pop(scheduled_id, None)
        if call is None:
            return
        if call.name == "set_weights":
            self._weights(call.input, time)
        elif call.name == "advance":
            self._weights(p.get(call.input, "weights"), time)
            self._advance_event(p.get(call.input, "event"), time)
        elif call.name == "check_metric":
            metric = p.get(call.input, "metric")
            self._check(call, result, metric, time)
        elif call.name == "analyse_step":
            self._step_results(call, result, time)
        elif call.name == "call_webhook":
            hook = p.get(call.input, "webhook")
            # A rollout webhook is the first check of the step whose metrics follow it.
            step = self.step + 1 if p.get(hook, "type") == "rollout" else None
            self._webhook(hook, result, time, step=step)
        elif call.name == "read_revision" and p.get(result, "revision"):
            self.revision = str(p.get(result, "revision"))

    def _failed(self, scheduled_id: int, message: str, time: datetime) -> None:
        call = self.scheduled.pop(scheduled_id, None)
        if call is None:
            return
        if call.name == "check_metric":
            metric = p.get(call.input, "metric")
            name = p.text(p.get(metric, "name"), "metric")
            error = {"name": name, "outcome": "provider error", "message": f"{name}: {message}"}
            self._check(call, error, metric, time)
        elif call.name == "call_webhook":
            hook = p.get(call.input, "webhook")
            self._webhook(hook, {"ok": False, "message": message}, time, step=None)
        elif call.name == "analyse_step":
            self._step_of(call)
            for metric in p.items(p.get(call.input, "metrics")):
                name = p.text(p.get(metric, "name"), "metric")
                error = {"name": name, "outcome": "provider error", "message": message}
                self._check(call, error, metric, time)

    def _weights(self, data: Any, time: datetime) -> None:
        if not isinstance(data, dict):
            return
        canary = p.integer(p.get(data, "canary"))
        primary = p.integer(p.get(data, "primary"), 100 - canary)
        self.weight = canary
        self.weights.append(WeightChange(time, canary, primary, bool(p.get(data, "mirrored"))))

    def _step_of(self, call: _Scheduled) -> int:
        # Checks scheduled by one workflow task belong to one step (gathered concurrently).
        if call.name == "analyse_step" or call.task != self.step_task:
            self.step += 1
            self.step_task = call.task
        return self.step

    def _check(self, call: _Scheduled, result: Any, metric: Any, time: datetime) -> None:
        step = self._step_of(call) if call.name == "check_metric" else self.step
        name = p.text(p.get(result, "name")) or p.text(p.get(metric, "name"), "metric")
        low, high = self._bounds(name, metric)
        self.checks.append(
            CheckPoint(
                step=step,
                time=time,
                weight=self.weight,
                name=name,
                value=p.number(p.get(result, "value")),
                min=p.number(p.get(result, "min")) if p.get(result, "min") is not None else low,
                max=p.number(p.get(result, "max")) if p.get(result, "max") is not None else high,
                outcome=p.text(p.get(result, "outcome"), "ok"),
                message=p.text(p.get(result, "message")),
                judgement=judgement(p.get(result, "judgement")),
            )
        )

    def _step_results(self, call: _Scheduled, result: Any, time: datetime) -> None:
        self._step_of(call)
        hooks = {p.text(p.get(h, "name")): h for h in p.items(p.get(call.input, "webhooks"))}
        for outcome in p.items(p.get(result, "webhooks")):
            # WebhookOutcome {name, result, attempts}, or a bare WebhookResult.
            answer = p.get(outcome, "result", outcome)
            name = p.text(p.get(outcome, "name"))
            spec = hooks.get(name) or {"name": name or "webhook", "type": "rollout"}
            self._webhook(spec, answer, time, step=self.step)
        specs = {p.text(p.get(m, "name")): m for m in p.items(p.get(call.input, "metrics"))}
        for metric in p.items(p.get(result, "metrics")):
            self._check(call, metric, specs.get(p.text(p.get(metric, "name"))), time)

    def _bounds(self, name: str, metric: Any) -> tuple[float | None, float | None]:
        spec = next((m for m in self._metric_specs() if m.name == name), None)
        if spec is not None:
            return metric_bounds(spec)
        bounds = p.get(metric, "threshold_range")
        return p.number(p.get(bounds, "min")), p.number(p.get(bounds, "max"))

    def _metric_specs(self) -> list[Any]:
        return list(self.canary.spec.analysis.metrics) if self.canary else []

    def _webhook(self, hook: Any, result: Any, time: datetime, *, step: int | None) -> None:
        code = p.get(result, "status_code")
        self.webhooks.append(
            WebhookCall(
                time=time,
                name=p.text(p.get(hook, "name"), "webhook"),
                type=p.text(p.get(hook, "type"), "rollout"),
                ok=bool(p.get(result, "ok")),
                message=p.text(p.get(result, "message")),
                status_code=p.integer(code) if code is not None else None,
                step=step,
            )
        )

    # --- events and actions ----------------------------------------------------------------

    def _event(self, message: str, time: datetime, *, reason: str = "", kind: str = "") -> None:
        guessed_reason, guessed_kind = event_kind(message)
        self.events.append(Event(time, kind or guessed_kind, reason or guessed_reason, message))
        found = _ITERATION.search(message)
        if found:
            number, wanted = int(found.group(1)), int(found.group(2))
            self.iterations.append(Iteration(time, number, wanted))

    def _advance_event(self, event: Any, time: datetime) -> None:
        message = p.text(p.get(event, "message"))
        if message:
            reason, kind = p.text(p.get(event, "reason")), p.text(p.get(event, "type"))
            self._event(message, time, reason=reason, kind=kind)

    def _action(self, name: str, request: Any, time: datetime, *, via: str) -> None:
        if name not in _ACTIONS:
            return
        action = name.replace("_", "-")
        if name == "promote" and p.get(request, "full"):
            action = "promote-full"
        reason = p.get(request, "reason")
        if name == "new_revision":
            if not self._announces(p.text(p.get(request, "revision")).strip()):
                return
            reason = reason or f"revision {p.text(p.get(request, 'revision'))}"
        identity = p.text(p.get(request, "identity"), "unknown")
        self.actions.append(Action(time, action, identity, reason, via=via))

    def _announces(self, revision: str) -> bool:
        """Whether a new_revision request changed anything (the workflow ignores the revision
        it already has or has queued, and takes the first one as its own)."""
        if self.revision is None:
            self.revision = revision or None
            return False
        if not revision or revision == (self.announced or self.revision):
            return False
        self.announced = revision
        return True

    # --- the result ------------------------------------------------------------------------

    def timeline(self) -> RolloutTimeline:
        assert self.started is not None, "a history starts with WorkflowExecutionStarted"
        canary, data = self.canary, self.input
        name, namespace = _names(canary, self.workflow_id)
        strategy = canary.spec.analysis.strategy.value if canary else "canary"
        checks = tuple(self.checks)
        actions = tuple(self.actions)
        return RolloutTimeline(
            workflow_id=self.workflow_id,
            run_ids=tuple(self.run_ids),
            name=name,
            namespace=namespace,
            cluster=p.text(p.get(data, "cluster"), "default"),
            strategy=strategy,
            revision=self.revision,
            requested_by=p.get(data, "requested_by"),
            reason=p.get(data, "reason"),
            started=self.started,
            ended=self.ended,
            outcome=self.outcome,
            message=self.message,
            canary=canary,
            metrics=tuple(bands(canary)),
            weights=tuple(self.weights),
            iterations=tuple(self.iterations),
            checks=checks,
            webhooks=tuple(self.webhooks),
            actions=actions,
            pauses=tuple(pauses(actions, self.ended)),
            events=tuple(self.events),
            decisive=decisive_of(self.outcome, self.message, checks, self.webhooks, actions),
        )


def _names(canary: Canary | None, workflow_id: str) -> tuple[str, str]:
    if canary is not None:
        return canary.name, canary.namespace
    parts = workflow_id.split("/")
    return parts[-1], parts[-2] if len(parts) > 2 else "default"


def timeline_of(histories: WorkflowHistory | Sequence[WorkflowHistory]) -> RolloutTimeline:
    """The timeline of a rollout from its history (or its runs' histories, oldest first)."""
    runs = [histories] if isinstance(histories, WorkflowHistory) else list(histories)
    if not runs:
        raise ValueError("no history to read")
    reader = _Reader(workflow_id=runs[0].workflow_id)
    for history in runs:
        reader.read(history)
    return reader.timeline()
