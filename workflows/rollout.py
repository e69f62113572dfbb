"""``CanaryRolloutWorkflow``: one durable workflow per rollout of one target.

``run()`` does the platform concerns — status and Web UI details, the rollback scope, waiting for
handlers — and hands the business to small phase methods: initialize, the confirm-rollout gate,
scale up, analysis (``_steps``), promotion, finalisation. Operator control lives in ``_operator``.

A rollback (failed-check threshold, progress deadline, rollback webhook, abort, cancellation or an
activity failing for good) runs the undo stack in reverse — traffic back to the primary, canary
to zero; the primary is never touched — records Failed, calls the post-rollout hooks, then fails
the workflow with ``ApplicationError(type="RolloutFailed")`` so CI sees a non-zero exit.

Everything here is deterministic: time from ``workflow.now()``, no I/O, no randomness; concurrency
only through the SDK's event loop (``asyncio.create_task``/``gather``), which replays in order.

Started without the ``coalmine`` command (input: ``RolloutInput`` as JSON, camelCase or snake_case;
the ID from ``model.workflow_id``)::

    temporal workflow execute --type CanaryRollout --task-queue coalmine \
        --workflow-id canary/default/test/podinfo \
        --input '{"canary": <the Canary as JSON>, "revision": "<pod template hash>"}'

Operator control: updates ``promote`` (``{"full": true}`` skips the remaining analysis),
``abort`` (``{"reason": "..."}``), ``pause``, ``resume``, ``new_revision``
(``{"revision": "..."}``), each also a signal of the same name; query ``status``.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

# Passed through the sandbox: these modules hold frozen pydantic models and deterministic code
# only, so every rollout can share the worker's copy instead of re-importing them (and rebuilding
# every pydantic schema) for each workflow run.
with workflow.unsafe.imports_passed_through():
    from workflows._ab_testing import ABTestingSteps
    from workflows._base import format_duration
    from workflows._blue_green import BlueGreenSteps
    from workflows._calls import Activities
    from workflows._compensation import Compensations
    from workflows._core import (
        CANARY_STATUS_PATCH,
        LOCAL_ADVANCE_PATCH,
        ONE_ACTIVITY_STEP_PATCH,
        RestartAnalysis,
        RollbackRequested,
    )
    from workflows._mirroring import MirroringSteps
    from workflows._operator import OperatorControl
    from workflows._session_affinity import SessionAffinitySteps
    from workflows._state import OperatorRequests, RolloutState
    from workflows._steps import FLAGGER_EVENTS_PATCH
    from workflows.decisions import promotion_weights
    from workflows.model import (
        ROLLOUT_FAILED_ERROR,
        WORKFLOW_NAME,
        Phase,
        RolloutInput,
        RolloutResult,
        RolloutStatus,
    )
    from workflows.spec import Strategy


_RESUMABLE_IN_ANALYSIS = (Phase.PROGRESSING, Phase.WAITING_PROMOTION)
ZERO_DOWNTIME_INIT_PATCH = "zero-downtime-init"
"""``workflow.patched`` ID of the two-stage first initialization (primary ready first)."""
REVISION_MISMATCH_ERROR = "RevisionMismatch"
"""Type of the promote activity's refusal when the target no longer runs the analysed revision."""
STRATEGIES_PATCH = "strategies"
"""``workflow.patched`` ID of A/B testing, Blue/Green and mirroring (issue 13)."""


@workflow.defn(name=WORKFLOW_NAME)
class CanaryRolloutWorkflow(
    ABTestingSteps, BlueGreenSteps, MirroringSteps, SessionAffinitySteps, OperatorControl
):
    """Roll a new revision of a Deployment out behind Istio, as Flagger does."""

    @workflow.init
    def __init__(self, input: RolloutInput) -> None:
        # Built from the input alone, so the status query and the handlers work from the very
        # first workflow task (update-with-start delivers its update in that task).
        canary = input.canary
        self._input = input
        resume = input.resume
        status = resume.status if resume is not None else input.status
        self._resumed = status is not None
        self._state = RolloutState(
            status=status
            or RolloutStatus(
                name=canary.name,
                namespace=canary.namespace,
                cluster=input.cluster,
                revision=input.revision,
                strategy=canary.spec.analysis.strategy.value,
            ),
            target=canary.spec.target_ref.name,
        )
        self._calls = Activities(
            canary,
            input.cluster,
            interrupted=self._interrupted,
            sticky_session=self._sticky_session,
        )
        self._rolling_back = False
        self._undo = Compensations()
        self._events = []
        self._task = None
        self._first_initialization = False
        self._canary_status = False
        self._status_wanted = None
        self._status_task = None
        self._status_carried = False
        self._one_activity_step = False
        self._flagger_events = False
        if resume is not None:
            self._state.requests = OperatorRequests(**resume.requests.model_dump(by_alias=False))
            self._first_initialization = resume.first_initialization

    @workflow.run
    async def run(self, input: RolloutInput) -> RolloutResult:
        # Runs started before the Canary's status was written (their histories hold no such
        # local activities) replay without it.
        self._canary_status = workflow.patched(CANARY_STATUS_PATCH)
        # A step in three actions, a state that survives continue-as-new whole (issue 15).
        self._one_activity_step = workflow.patched(ONE_ACTIVITY_STEP_PATCH)
        self._flagger_events = workflow.patched(FLAGGER_EVENTS_PATCH)
        # The step's weight change as a local activity: one workflow task and one activity task
        # fewer per step (issue 15).
        self._calls.local_advance = self._one_activity_step and workflow.patched(
            LOCAL_ADVANCE_PATCH
        )
        self._state.weight_with_phase_only = self._one_activity_step
        self._state.on_change = self._sync_canary_status
        self._state.start()
        if not self._resumed:
            self._state.add_action(
                "start", identity=input.requested_by or "unknown", reason=input.reason
            )
        if input.resume is not None:
            # Before the task starts: an abort carried across must still undo what was done.
            self._register_undos(input.resume.undo)
        self._task = asyncio.create_task(self._rollout())
        if self._state.requests.abort_reason is not None:
            self._task.cancel()  # aborted before the first step began
        try:
            result = await self._task
        except (asyncio.CancelledError, RollbackRequested, FailureError) as err:
            reason = self._failure_reason(err)
            await self._roll_back(reason)
            await self._finish()
            raise ApplicationError(reason, type=ROLLOUT_FAILED_ERROR, non_retryable=True) from err
        await self._finish()
        assert isinstance(result, RolloutResult)
        return result

    def _interrupted(self) -> bool:
        """Whether the rollout was cancelled or aborted (checked after every activity)."""
        if self._rolling_back:
            return False  # the rollback's own calls must run to the end
        cancelled = workflow.cancellation_reason() is not None
        return cancelled or self._state.requests.abort_reason is not None

    async def _finish(self) -> None:
        await self._drain_events()
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _rollout(self) -> RolloutResult:
        phase = self._state.status.phase
        if self._resumed and phase in _RESUMABLE_IN_ANALYSIS:
            if self._input.resume is None:
                self._register_undos()  # continued as new mid-analysis: the canary is up
        else:
            if not self._resumed:
                await self._initialize()
                if self._nothing_to_roll_out():
                    return self._complete_without_analysis()
                if not self._flagger_events:  # worded as Flagger's at the scale-up instead
                    self._event(
                        f"New revision detected {self._display}",
                        reason="NewRevision",
                        severity="info",
                    )
            await self._wait_for_confirm_rollout()
            await self._scale_up()
        while True:
            await self._analyse()
            if await self._promote():
                return await self._finalise()
            # The target moved on under the promotion: analyse what it runs now.
            await self._restart()

    # --- phases ------------------------------------------------------------------------------

    async def _initialize(self) -> None:
        """Primary, Services and routes (idempotent), then wait for the primary to be ready."""
        if self._state.status.revision is None:
            info = await self._calls.read_revision()
            # A revision handed over meanwhile (update-with-start) wins over the one read.
            revision = self._state.status.revision or info.revision
            self._state.set(revision=revision, last_promoted_revision=info.promoted_revision)
        if workflow.patched(ZERO_DOWNTIME_INIT_PATCH):
            # The primary is ready before anything routes to it: routes, then the apex
            # Service, then the target scaled down (Flagger's order, no moment without pods).
            result = await self._calls.initialize("prepare")
            await self._wait_ready(self._calls.ref.primary, primary=True)
            await self._calls.reconcile_routes()
            if result.first_initialization:
                await self._calls.initialize("switch")
        else:
            result = await self._calls.initialize()
            await self._calls.reconcile_routes()
            await self._wait_ready(self._calls.ref.primary, primary=True)
        promoted = result.promoted_revision or self._state.status.last_promoted_revision
        self._first_initialization = result.first_initialization
        self._state.set(last_promoted_revision=promoted)
        self._state.set_phase(Phase.INITIALIZED)

    def _nothing_to_roll_out(self) -> bool:
        status = self._state.status
        return self._first_initialization or status.revision == status.last_promoted_revision

    def _complete_without_analysis(self) -> RolloutResult:
        status = self._state.status
        if self._first_initialization:
            message = f"Initialization done! {self._display}"
        else:
            message = f"No new revision for {self._display}: {status.revision} is already promoted"
        self._event(message, reason="Synced", severity="info")
        self._state.set(last_promoted_revision=status.revision)
        self._state.set_phase(Phase.SUCCEEDED, message)
        return RolloutResult(phase=Phase.SUCCEEDED, revision=status.revision, message=message)

    async def _wait_ready(self, deployment: str, *, primary: bool) -> None:
        analysis = self._input.canary.spec.analysis
        threshold = analysis.primary_ready_threshold if primary else analysis.canary_ready_threshold
        ready = await self._calls.wait_ready(deployment, threshold=threshold)
        if not ready.ready:
            which = "primary" if primary else "canary"
            raise RollbackRequested(
                f"Rolling back {self._display} progress deadline exceeded {which} deployment "
                f"{deployment}.{self._calls.ref.namespace} not ready: {ready.message}"
            )

    def _register_undos(self, keys: list[str] | None = None) -> None:
        """The canary's undo steps (``keys``: those a previous run had, in its order)."""
        steps = {
            "canary": ("scale canary to zero", self._scale_down),
            "traffic": ("all traffic to the primary", self._route_to_primary),
        }
        for key in steps if keys is None else keys:
            description, run = steps[key]
            self._undo.register(key, description, run)

    async def _scale_down(self) -> None:
        await self._calls.scale_canary(0, undo=True)

    async def _route_to_primary(self) -> None:
        await self._calls.set_weights(100, 0, undo=True)
        self._state.set(canary_weight=0)

    async def _scale_up(self) -> None:
        """Scale the canary up and wait until it is ready (past the deadline: roll back)."""
        self._state.set_phase(Phase.PROGRESSING)
        if self._flagger_events:
            ref = self._calls.ref
            message = f"New revision detected! Scaling up {ref.target}.{ref.namespace}"
            self._event(message, reason="NewRevision", severity="info")
        else:
            self._event(f"Scaling up {self._display}", reason="Scaling")
        # Undo registered first: a scale-up cancelled half-way must still be scaled down.
        self._register_undos()
        await self._calls.scale_canary(None)
        await self._wait_ready(self._calls.ref.target, primary=False)

    async def _analyse(self) -> None:
        """Pre-rollout hooks and the step loop; a new revision restarts them (Flagger's rule)."""
        while True:
            if self._input.canary.spec.skip_analysis or self._state.requests.promote_full:
                return
            try:
                status = self._state.status
                if status.canary_weight == 0 and status.iterations == 0:
                    self._event(f"Starting canary analysis for {self._display}", reason="Analysis")
                    await self._pre_rollout()
                await self._strategy_loop()
                return
            except RestartAnalysis:
                await self._restart()

    async def _strategy_loop(self) -> None:
        """The analysis of the Canary's strategy (Flagger's choice), until it may promote."""
        strategy = self._input.canary.spec.analysis.strategy
        # Rollouts of a plain canary, all that ran before strategies existed, take the same
        # path as before; the others are marked so their histories say which code ran them.
        if strategy != Strategy.CANARY and workflow.patched(STRATEGIES_PATCH):
            if strategy == Strategy.AB_TESTING:
                await self._ab_testing()
                return
            if strategy.iterative:
                await self._blue_green()
                return
            await self._mirror_first()
        await self._step_loop()

    async def _restart(self) -> None:
        # The target is the source of truth: whichever revision was announced, the one its pod
        # template has now is what gets analysed (two CI jobs can announce theirs out of order).
        info = await self._calls.read_revision()
        self._state.set(revision=info.revision)
        self._event(
            f"New revision detected! Restarting analysis for {self._display}",
            reason="NewRevision",
            severity="info",
        )
        await self._set_weight(0)
        self._state.set(failed_checks=0, iterations=0, metrics={})
        self._state.set_phase(Phase.PROGRESSING)
        await self._wait_ready(self._calls.ref.target, primary=False)

    async def _promote(self) -> bool:
        """Copy the canary's spec to the primary and wait for it to be ready.

        False when the target no longer runs the analysed revision (the promote activity checks
        it before writing anything): that spec was never analysed, so it is not promoted.
        """
        self._state.set_phase(Phase.PROMOTING)
        if self._one_activity_step:
            # Honoured: a promote was for the revision analysed; a later one is analysed anew.
            self._state.requests.promote = self._state.requests.promote_full = False
        ref = self._calls.ref
        self._event(
            f"Copying {self._display} template spec to {ref.primary}.{ref.namespace}",
            reason="Promoting",
        )
        revision = self._state.status.revision or ""
        try:
            await self._calls.promote(revision)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == REVISION_MISMATCH_ERROR:
                return False
            raise
        await self._wait_ready(ref.primary, primary=True)
        return True

    async def _finalise(self) -> RolloutResult:
        """Route all traffic to the primary, scale the canary to zero, post-rollout hooks."""
        self._state.set_phase(Phase.FINALISING)
        steps = promotion_weights(
            self._state.status.canary_weight,
            self._input.canary.spec.analysis.step_weight_promotion,
        )
        stepped = bool(self._input.canary.spec.analysis.step_weight_promotion)
        for index, (primary, canary) in enumerate(steps):
            if index:
                await workflow.sleep(
                    self._interval, summary=f"promotion interval {format_duration(self._interval)}"
                )
            if self._flagger_events and not stepped:
                self._event("Routing all traffic to primary", reason="Synced")
            await self._calls.set_weights(primary, canary)
            self._state.set(canary_weight=canary)
            if self._flagger_events and stepped:
                message = f"Advance {self._display} primary weight {primary}"
                self._event(message, reason="Synced")
        message = f"Promotion completed! Scaling down {self._display}"
        self._event(message, reason="Promoted", severity="info")
        await self._calls.scale_canary(0)
        self._undo.discard("traffic")
        self._undo.discard("canary")
        revision = self._state.status.revision
        self._state.set(last_promoted_revision=revision)
        self._state.set_phase(Phase.SUCCEEDED, message)
        await self._post_rollout()
        return RolloutResult(phase=Phase.SUCCEEDED, revision=revision, message=message)

    # --- rollback ----------------------------------------------------------------------------

    def _failure_reason(self, err: BaseException) -> str:
        if isinstance(err, RollbackRequested):
            return err.reason
        abort = self._state.requests.abort_reason
        if abort is not None:
            return abort
        # Checked before the error type: an activity cancelled with the workflow raises an
        # ActivityError whose cause is the cancellation.
        if workflow.cancellation_reason() is not None:
            return f"Rolling back {self._display} workflow cancelled"
        if isinstance(err, ActivityError):
            cause = err.cause or err
            return f"Rolling back {self._display} {err.activity_type} failed: {cause}"
        if isinstance(err, FailureError):
            return f"Rolling back {self._display}: {err}"
        return f"Rolling back {self._display} workflow cancelled"

    async def _roll_back(self, reason: str) -> None:
        """Undo in reverse (even while being cancelled), record Failed, post-rollout hooks."""
        self._rolling_back = True
        self._event(reason, reason="Rollback", warning=True, severity="error")
        failed = await self._undo.run_all()
        self._event(
            f"Canary failed! Scaling down {self._display}",
            reason="Failed",
            warning=True,
            severity="error",
        )
        message = reason if not failed else f"{reason} (undo failed: {', '.join(failed)})"
        self._state.set(paused=False)
        self._state.set_phase(Phase.FAILED, message)
        await self._post_rollout()

    async def _post_rollout(self) -> None:
        """post-rollout hooks with the final phase; their failures are only reported."""
        for hook in self._input.canary.spec.analysis.webhooks_of("post-rollout"):
            result = await self._hook(hook)
            if result.ok and self._flagger_events:
                self._event(f"Post-rollout check {hook.name} passed", reason="Synced")
            if not result.ok:
                self._event(
                    f"Post-rollout hook {hook.name} failed {result.message}".strip(),
                    reason="PostRollout",
                    warning=True,
                    severity=None if hook.mute_alert else "error",
                )
