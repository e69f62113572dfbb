"""Operator control: updates (with validators) and signals of the same names, and the query.

Updates are what the ``coalmine`` command uses: a validator refuses what makes no sense in the
current phase before anything reaches history, and the caller gets the status back. Signals carry
the same requests for the Web UI's signal button (no answer, so a refusal is only logged). The
SDK keeps signals and updates apart, so both are registered under the same names.

Every handler is synchronous: it changes state and returns without awaiting, so handlers can
neither interleave with each other nor with the main loop half-way through a change (the
guarantee the safe-message-handlers sample gets from a lock). The main loop acts on the requests
at its next wait; abort cancels the running step at once.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import decisions
from workflows._core import RolloutCore
from workflows._state import ActionName
from workflows.model import (
    AbortRequest,
    NewRevisionRequest,
    OperatorRequest,
    PromoteRequest,
    RolloutStatus,
)

_PROMOTE = (
    "Promote the canary. By default the remaining weight steps are skipped: traffic goes to the "
    "maximum weight, one more analysis must pass, then promotion. With full=true promotion "
    "starts at once, without further analysis. Approves any waiting confirm-* gate."
)
_ABORT = (
    "Abort the rollout: all traffic back to the primary, the canary scaled to zero, the workflow "
    "fails as rolled back. A reason is required."
)
_PAUSE = "Pause the rollout at its current weight: no analysis, no weight change, until resumed."
_RESUME = "Resume a paused rollout: analysis continues after a full interval."
_NEW_REVISION = (
    "A new revision of the target: traffic goes back to the primary, failed checks and "
    "iterations reset, and analysis restarts with it. The same revision is a no-op."
)


def _refuse(message: str | None) -> None:
    if message is not None:
        raise ApplicationError(message, type="InvalidOperatorRequest", non_retryable=True)


class OperatorControl(RolloutCore):
    """Update, signal and query handlers of ``CanaryRolloutWorkflow``."""

    @workflow.query(description="The whole rollout status (Flagger's status fields and more).")
    def status(self) -> RolloutStatus:
        return self._state.status

    # --- promote ---------------------------------------------------------------------------

    @workflow.update(description=_PROMOTE)
    def promote(self, request: PromoteRequest) -> RolloutStatus:
        self._apply_promote(request)
        return self._state.status

    @promote.validator
    def _validate_promote(self, request: PromoteRequest) -> None:
        _refuse(self._promote_refusal())

    @workflow.signal(name="promote", description=_PROMOTE)
    def promote_signal(self, request: PromoteRequest) -> None:
        if self._accepted_signal("promote", self._promote_refusal()):
            self._apply_promote(request)

    def _promote_refusal(self) -> str | None:
        return self._refusal("promote")

    def _apply_promote(self, request: PromoteRequest) -> None:
        requests = self._state.requests
        requests.promote = True
        requests.promote_full = requests.promote_full or request.full
        requests.wake = True
        self._state.set(paused=False)  # promoting is a decision to go on
        action: ActionName = "promote-full" if request.full else "promote"
        self._state.add_action(action, identity=request.identity, reason=request.reason)

    # --- abort -------------------------------------------------------------------------------

    @workflow.update(description=_ABORT)
    def abort(self, request: AbortRequest) -> RolloutStatus:
        self._apply_abort(request)
        return self._state.status

    @abort.validator
    def _validate_abort(self, request: AbortRequest) -> None:
        _refuse(self._abort_refusal())

    @workflow.signal(name="abort", description=_ABORT)
    def abort_signal(self, request: AbortRequest) -> None:
        if self._accepted_signal("abort", self._abort_refusal()):
            self._apply_abort(request)

    def _abort_refusal(self) -> str | None:
        if self._state.requests.abort_reason is not None:
            return "the rollout is already being aborted"
        return self._refusal("abort")

    def _apply_abort(self, request: AbortRequest) -> None:
        self._state.requests.abort_reason = (
            f"Rolling back {self._display} aborted by {request.identity}: {request.reason}"
        )
        self._state.add_action("abort", identity=request.identity, reason=request.reason)
        if self._task is not None:
            # Cancelling the step in progress (activity, timer or wait) starts the rollback now.
            self._task.cancel()

    # --- pause / resume ------------------------------------------------------------------------

    @workflow.update(description=_PAUSE)
    def pause(self, request: OperatorRequest) -> RolloutStatus:
        self._apply_pause(request, paused=True)
        return self._state.status

    @pause.validator
    def _validate_pause(self, request: OperatorRequest) -> None:
        _refuse(self._refusal("pause"))

    @workflow.signal(name="pause", description=_PAUSE)
    def pause_signal(self, request: OperatorRequest) -> None:
        if self._accepted_signal("pause", self._refusal("pause")):
            self._apply_pause(request, paused=True)

    @workflow.update(description=_RESUME)
    def resume(self, request: OperatorRequest) -> RolloutStatus:
        self._apply_pause(request, paused=False)
        return self._state.status

    @resume.validator
    def _validate_resume(self, request: OperatorRequest) -> None:
        _refuse(self._refusal("resume"))

    @workflow.signal(name="resume", description=_RESUME)
    def resume_signal(self, request: OperatorRequest) -> None:
        refusal = self._refusal("resume")
        if self._accepted_signal("resume", refusal):
            self._apply_pause(request, paused=False)

    def _apply_pause(self, request: OperatorRequest, *, paused: bool) -> None:
        self._state.set(paused=paused)
        action: ActionName = "pause" if paused else "resume"
        self._state.add_action(action, identity=request.identity, reason=request.reason)

    # --- new revision ---------------------------------------------------------------------

    @workflow.update(description=_NEW_REVISION)
    def new_revision(self, request: NewRevisionRequest) -> RolloutStatus:
        self._apply_new_revision(request)
        return self._state.status

    @new_revision.validator
    def _validate_new_revision(self, request: NewRevisionRequest) -> None:
        _refuse(self._new_revision_refusal(request))

    @workflow.signal(name="new_revision", description=_NEW_REVISION)
    def new_revision_signal(self, request: NewRevisionRequest) -> None:
        if self._accepted_signal("new_revision", self._new_revision_refusal(request)):
            self._apply_new_revision(request)

    def _new_revision_refusal(self, request: NewRevisionRequest) -> str | None:
        return self._refusal("new-revision", revision=request.revision)

    def _apply_new_revision(self, request: NewRevisionRequest) -> None:
        if self._state.status.revision is None:
            # Update-with-start of a rollout whose input named no revision: this is the one.
            self._state.set(revision=request.revision)
            return
        # The same revision as the one under analysis (or already queued) is a no-op.
        current = self._state.requests.new_revision or self._state.status.revision
        if request.revision == current:
            return
        self._state.requests.new_revision = request.revision
        self._state.requests.wake = True
        reason = request.reason or f"revision {request.revision}"
        self._state.add_action("new-revision", identity=request.identity, reason=reason)

    def _refusal(
        self, action: decisions.OperatorActionName, *, revision: str | None = None
    ) -> str | None:
        if self._rolling_back:
            return f"the rollout is rolling back: nothing to {action}"
        return decisions.operator_refusal(action, self._state.status, revision=revision)

    def _accepted_signal(self, name: str, refusal: str | None) -> bool:
        if refusal is None:
            return True
        workflow.logger.warning("Signal %s ignored: %s", name, refusal)
        return False
