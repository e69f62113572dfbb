"""What every part of the rollout workflow shares: state, activities, events, waits, undo stack.

``CanaryRolloutWorkflow`` is assembled from mixins (analysis steps, operator control) that all
derive from ``RolloutCore``; the SDK collects handlers from base classes, so the pieces can live in
modules of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import FailureError

from workflows._base import format_duration
from workflows._calls import Activities
from workflows._compensation import Compensations
from workflows._state import RolloutState
from workflows.activity_api import CanaryStatusInput, EventInput
from workflows.model import PendingRequests, Phase, ResumeState, RolloutInput

Severity = Literal["info", "warn", "error"]

CANARY_STATUS_PATCH = "canary-status"
"""``workflow.patched`` ID of the Canary status writes (runs started before it write none)."""

ONE_ACTIVITY_STEP_PATCH = "one-activity-step"
"""``workflow.patched`` ID of the three-action step (``analyse_step``, ``advance``, the weight
upserted with the phase only) and of continue-as-new carrying the whole ``ResumeState``."""

LOCAL_ADVANCE_PATCH = "local-advance"
"""``workflow.patched`` ID of the step's ``advance`` run as a local activity: the weight change
runs inside the workflow task that has the checks' answers, and the next interval's timer starts
in that same task."""

DEFAULT_MAX_HISTORY_EVENTS = 10_000
"""History length at which a rollout continues as new (the hard limit is 51,200 events)."""


class RollbackRequested(Exception):
    """Raised inside the workflow to roll back: threshold, deadline, rollback webhook."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RestartAnalysis(Exception):
    """A new revision arrived during analysis: traffic back to the primary, start over."""


class RolloutCore:
    """State and helpers shared by the workflow's mixins."""

    _input: RolloutInput
    _state: RolloutState
    _calls: Activities
    _undo: Compensations
    _events: list[asyncio.Task[None]]
    _task: asyncio.Task[object] | None
    _rolling_back: bool
    _first_initialization: bool
    _canary_status: bool
    """Whether to keep the Canary's ``/status`` current (patched in, and the Canary exists)."""
    _status_wanted: CanaryStatusInput | None
    _status_task: asyncio.Task[None] | None
    _status_carried: bool
    """While True, a status change is sent with the step's activity, not on its own."""
    _one_activity_step: bool
    """Patched in: a step costs three actions, continue-as-new carries `ResumeState`."""
    _flagger_events: bool
    """Patched in: the events current Flagger records (checks passed, traffic routing)."""
    _resumed: bool
    """Continued as new: the rollout goes on from the state carried across."""

    @property
    def _display(self) -> str:
        """``podinfo.test``, as Flagger's messages name a canary."""
        return self._calls.ref.display

    @property
    def _interval(self) -> float:
        return self._input.canary.spec.analysis.interval_seconds

    # --- events ----------------------------------------------------------------------------

    def _event(
        self,
        message: str,
        *,
        reason: str,
        warning: bool = False,
        severity: Severity | None = None,
    ) -> None:
        """Record an event in the status and, without waiting, in the cluster and alerts."""
        event = self._event_input(message, reason=reason, warning=warning, severity=severity)
        # Started, not awaited: an event never delays a step. The tasks are drained before the
        # workflow ends or continues as new.
        self._events = [t for t in self._events if not t.done()]
        self._events.append(asyncio.create_task(self._send_event(event)))

    def _event_input(
        self,
        message: str,
        *,
        reason: str,
        warning: bool = False,
        severity: Severity | None = None,
    ) -> EventInput:
        """Record an event in the status; what recording it in the cluster and alerts takes."""
        kind: Literal["Normal", "Warning"] = "Warning" if warning else "Normal"
        self._state.add_event(reason=reason, message=message, type=kind)
        analysis = self._input.canary.spec.analysis
        return EventInput(
            ref=self._calls.ref,
            type=kind,
            reason=reason,
            message=message,
            phase=self._state.status.phase,
            revision=self._state.status.revision,
            weight=self._state.status.canary_weight,
            event_webhooks=analysis.webhooks_of("event"),
            alerts=analysis.alerts,
            alert_severity=severity,
        )

    async def _send_event(self, event: EventInput) -> None:
        try:
            await self._calls.record_event(event)
        except FailureError as err:
            # Events must never fail a rollout: a notifier that is down is only logged. (A local
            # activity's final failure arrives as its ApplicationError, not as ActivityError.)
            workflow.logger.warning("Recording event %r failed: %s", event.message, err)

    async def _drain_events(self) -> None:
        if self._events:
            await asyncio.gather(*self._events)
            self._events = []
        if self._status_task is not None:
            await self._status_task

    # --- the Canary's status -------------------------------------------------------------------

    def _sync_canary_status(self) -> None:
        """Send the Flagger-shaped status to the Canary when a field it shows changed.

        Writes are chained: each waits for the one before and is skipped when a newer status
        is already queued, so the Canary never goes back to an older status and a burst of
        changes in one workflow task costs one write.
        """
        if not self._canary_status:
            return
        wanted = self._wanted_canary_status()
        sent = self._status_wanted
        if sent is not None and wanted.model_copy(update={"iterations": sent.iterations}) == sent:
            # Iterations alone (every interval) wait for the next change that matters, as
            # the step they count changes the weight a moment later: half the writes.
            return
        self._status_wanted = wanted
        if self._status_carried:
            return  # the step's own activity writes it (``_carried_status``)
        self._status_task = asyncio.create_task(self._send_status(self._status_task, wanted))

    def _wanted_canary_status(self) -> CanaryStatusInput:
        status = self._state.status
        phase = status.phase
        if phase == Phase.SUCCEEDED and self._first_initialization:
            phase = Phase.INITIALIZED  # the run is over; the Canary, as Flagger's, is Initialized
        return CanaryStatusInput(
            ref=self._calls.ref,
            phase=phase,
            canary_weight=status.canary_weight,
            failed_checks=status.failed_checks,
            iterations=status.iterations,
            revision=status.revision,
            last_promoted_revision=status.last_promoted_revision,
            last_transition_time=status.last_transition_time,
        )

    async def _carried_status(self, change: Callable[[], None]) -> CanaryStatusInput | None:
        """Apply ``change`` to the state without writing the Canary's status for it: the status
        to send with the step's activity instead (None when nothing the Canary shows changed).
        Earlier writes finish first, so the carried one is the newest to land."""
        if self._status_task is not None:
            await self._status_task
        before = self._status_wanted
        self._status_carried = True
        try:
            change()
        finally:
            self._status_carried = False
        if not self._canary_status or self._status_wanted is before:
            return None
        return self._status_wanted

    def _carried_status_result(self, exists: bool | None) -> None:
        """What the step's activity found: a Canary gone (or never there) gets no more writes."""
        if exists is False:
            self._canary_status = False
        elif exists is None and self._canary_status:
            self._status_wanted = None  # not written: the next change writes it again

    async def _send_status(
        self, previous: asyncio.Task[None] | None, wanted: CanaryStatusInput
    ) -> None:
        if previous is not None:
            await previous
        if wanted is not self._status_wanted or not self._canary_status:
            return  # a newer status follows, or the Canary is not in the cluster
        try:
            result = await self._calls.sync_canary_status(wanted)
        except FailureError as err:
            # Like events, the status never fails a rollout; the next change writes it again.
            self._status_wanted = None
            workflow.logger.warning("Writing the Canary's status failed: %s", err)
            return
        if not result.exists:
            self._canary_status = False  # a rollout from CI with a file: nothing to write to

    # --- waiting -----------------------------------------------------------------------------

    async def _wait_interval(self, what: str) -> None:
        """One analysis interval; ends early when an operator asks for something.

        While paused, the interval starts over once resumed, so the next check measures a full
        interval of traffic. Abort cancels the running task, so it also ends this wait.
        """
        await self._maybe_continue_as_new()
        summary = f"{what} {format_duration(self._interval)}"
        requests = self._state.requests
        try:
            while True:
                try:
                    await workflow.wait_condition(
                        lambda: requests.wake or self._state.status.paused,
                        timeout=timedelta(seconds=self._interval),
                        timeout_summary=summary,
                    )
                except TimeoutError:
                    return
                if not self._state.status.paused:
                    return
                await workflow.wait_condition(
                    lambda: not self._state.status.paused or requests.wake
                )
                if requests.wake:
                    return
        finally:
            requests.wake = False

    async def _maybe_continue_as_new(self) -> None:
        """Continue as new with the whole status before the history grows too long."""
        info = workflow.info()
        limit = self._input.max_history_events or DEFAULT_MAX_HISTORY_EVENTS
        if not (info.is_continue_as_new_suggested() or info.get_current_history_length() > limit):
            return
        await self._drain_events()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self._one_activity_step:
            if self._state.requests.pending:
                return  # act on the request first; a later wait continues as new
            workflow.continue_as_new(self._input.model_copy(update={"status": self._state.status}))
        requests = self._state.requests
        resume = ResumeState(
            status=self._state.status,
            requests=PendingRequests(
                promote=requests.promote,
                promote_full=requests.promote_full,
                abort_reason=requests.abort_reason,
                new_revision=requests.new_revision,
                wake=requests.wake,
            ),
            undo=self._undo.keys,
            first_initialization=self._first_initialization,
        )
        workflow.continue_as_new(self._input.model_copy(update={"status": None, "resume": resume}))
