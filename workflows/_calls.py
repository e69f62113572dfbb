"""Typed calls of the activities, by name, each with its options and a summary for the Web UI.

The workflow imports no activity code: it calls the names in ``activity_api`` with the payloads
defined there. Every call carries a timeout, a named retry policy and a one-line summary, which the
Web UI's timeline draws as a bar ("set_weights • set weights primary 80 / canary 20").

Mutating calls wait for a cancelled activity to finish cancelling
(``WAIT_CANCELLATION_COMPLETED``): when a rollout is aborted mid-call, the undo that follows must
not race with the call it undoes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import policies
from workflows._base import duration_seconds
from workflows.activity_api import (
    ActivityName,
    AdvanceInput,
    AdvanceResult,
    CanaryRef,
    CanaryStatusInput,
    CanaryStatusResult,
    EventInput,
    InitializeInput,
    InitializeResult,
    InitializeStage,
    MetricCheckInput,
    PromoteInput,
    ReadRevisionInput,
    ReadyResult,
    RevisionInfo,
    RoutesInput,
    ScaleCanaryInput,
    ScaleResult,
    SetWeightsInput,
    StepAnalysis,
    StepAnalysisInput,
    StickySession,
    WaitReadyInput,
    WebhookInput,
    WebhookResult,
    Weights,
)
from workflows.decisions import metric_summary, step_summary
from workflows.model import MetricResult, Phase
from workflows.spec import Canary, MetricSpec, WebhookSpec

R = TypeVar("R")

_WAIT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


class Activities:
    """The activities of one rollout, bound to its Canary and cluster."""

    def __init__(
        self,
        canary: Canary,
        cluster: str,
        *,
        interrupted: Callable[[], bool],
        sticky_session: Callable[[int], StickySession | None] | None = None,
    ) -> None:
        self.canary = canary
        self.cluster = cluster
        self.ref = CanaryRef.of(canary, cluster)
        self._interrupted = interrupted
        self._sticky_session = sticky_session
        self.local_advance = False
        """Run ``advance`` as a local activity (the ``local-advance`` patch, set by the run)."""

    async def _call(
        self,
        name: str,
        arg: Any,
        *,
        result_type: type[R],
        options: policies.ActivityOptions,
        summary: str,
        cancellation: workflow.ActivityCancellationType = _WAIT,
        local: bool = False,
    ) -> R:
        call: dict[str, Any] = {
            "result_type": result_type,
            "start_to_close_timeout": options.start_to_close,
            "schedule_to_close_timeout": options.schedule_to_close,
            "retry_policy": options.retry,
            "cancellation_type": cancellation,
            "summary": summary,
        }
        try:
            if local:
                # Run by this worker inside the workflow task that asked for it: no activity
                # task, and the workflow goes on in the same task (one marker in history).
                assert options.heartbeat is None, "a local activity does not heartbeat"
                result = await workflow.execute_local_activity(name, arg, **call)
            else:
                result = await workflow.execute_activity(
                    name, arg, heartbeat_timeout=options.heartbeat, **call
                )
        except ActivityError:
            if self._interrupted():
                # Cancelled with the rollout: not a failed webhook or a provider error.
                raise asyncio.CancelledError from None
            raise
        if self._interrupted():
            # The SDK hands back the result of an activity that completed although its
            # cancellation was requested, and the task's cancellation is consumed with it: honour
            # the abort or cancel here, so a rollout never goes on after one.
            raise asyncio.CancelledError
        assert isinstance(result, result_type)
        return result

    # --- Kubernetes ------------------------------------------------------------------------

    async def read_revision(self) -> RevisionInfo:
        return await self._call(
            ActivityName.READ_REVISION,
            ReadRevisionInput(ref=self.ref),
            result_type=RevisionInfo,
            options=policies.KUBERNETES,
            summary=f"read revision of {self.ref.target}",
        )

    async def initialize(self, stage: InitializeStage | None = None) -> InitializeResult:
        summaries = {
            None: f"initialize {self.ref.primary} and services {self.ref.service}",
            "prepare": f"initialize {self.ref.primary} and services (apex {self.ref.service} "
            "untouched)",
            "switch": f"switch service {self.ref.service} to {self.ref.primary}, scale "
            f"{self.ref.target} down",
        }
        return await self._call(
            ActivityName.INITIALIZE,
            InitializeInput(canary=self.canary, cluster=self.cluster, stage=stage),
            result_type=InitializeResult,
            options=policies.KUBERNETES,
            summary=summaries[stage],
        )

    async def scale_canary(self, replicas: int | None, *, undo: bool = False) -> ScaleResult:
        wanted = "up" if replicas is None else f"to {replicas}"
        return await self._call(
            ActivityName.SCALE_CANARY,
            ScaleCanaryInput(canary=self.canary, cluster=self.cluster, replicas=replicas),
            result_type=ScaleResult,
            options=policies.COMPENSATION if undo else policies.KUBERNETES,
            summary=f"scale {self.ref.target} {wanted}",
        )

    async def wait_ready(self, deployment: str, *, threshold: int) -> ReadyResult:
        deadline = float(self.canary.spec.progress_deadline_seconds)
        return await self._call(
            ActivityName.WAIT_READY,
            WaitReadyInput(
                ref=self.ref,
                deployment=deployment,
                deadline_seconds=deadline,
                ready_threshold=threshold,
            ),
            result_type=ReadyResult,
            options=policies.wait_ready(deadline),
            summary=f"wait for {deployment} ready (deadline {deadline:g}s)",
        )

    async def promote(self, revision: str) -> None:
        await self._call(
            ActivityName.PROMOTE,
            PromoteInput(canary=self.canary, cluster=self.cluster, revision=revision),
            result_type=type(None),
            options=policies.KUBERNETES,
            summary=f"copy {self.ref.target} template spec to {self.ref.primary}",
        )

    # --- traffic router ----------------------------------------------------------------------

    async def reconcile_routes(self) -> None:
        await self._call(
            ActivityName.RECONCILE_ROUTES,
            RoutesInput(canary=self.canary, cluster=self.cluster),
            result_type=type(None),
            options=policies.KUBERNETES,
            summary=f"reconcile routes of {self.ref.service}",
        )

    async def set_weights(
        self, primary: int, canary: int, *, undo: bool = False, mirrored: bool = False
    ) -> Weights:
        weights = SetWeightsInput(ref=self.ref, primary=primary, canary=canary)
        session = self._sticky_session(canary) if self._sticky_session else None
        if session is not None:
            weights = weights.model_copy(update={"session": session})
        summary = f"set weights primary {primary} / canary {canary}"
        if mirrored:
            mirror_weight = self.canary.spec.analysis.mirror_weight
            weights = weights.model_copy(update={"mirrored": True, "mirror_weight": mirror_weight})
            summary += f", mirrored {mirror_weight or 100}% to the canary"
        return await self._call(
            ActivityName.SET_WEIGHTS,
            weights,
            result_type=Weights,
            options=policies.COMPENSATION if undo else policies.KUBERNETES,
            summary=summary,
        )

    # --- analysis ----------------------------------------------------------------------------

    async def check_metric(self, metric: MetricSpec) -> MetricResult:
        return await self._call(
            ActivityName.CHECK_METRIC,
            MetricCheckInput(ref=self.ref, metric=metric),
            result_type=MetricResult,
            options=policies.ANALYSIS,
            summary=metric_summary(metric),
        )

    async def call_webhook(
        self, hook: WebhookSpec, *, phase: Phase, revision: str | None
    ) -> WebhookResult:
        return await self._call(
            ActivityName.CALL_WEBHOOK,
            WebhookInput(ref=self.ref, webhook=hook, phase=phase, checksum=revision),
            result_type=WebhookResult,
            options=policies.webhook(
                timeout_seconds=duration_seconds(hook.timeout), retries=hook.retries
            ),
            summary=f"call webhook {hook.name} ({hook.type})",
        )

    async def analyse_step(
        self,
        webhooks: list[WebhookSpec],
        metrics: list[MetricSpec],
        *,
        phase: Phase,
        revision: str | None,
    ) -> StepAnalysis:
        return await self._call(
            ActivityName.ANALYSE_STEP,
            StepAnalysisInput(
                ref=self.ref, webhooks=webhooks, metrics=metrics, phase=phase, checksum=revision
            ),
            result_type=StepAnalysis,
            options=policies.analyse_step(
                [(duration_seconds(h.timeout), h.retries) for h in webhooks]
            ),
            summary=step_summary([h.name for h in webhooks], metrics)[:200],
            # Checks only read: an abort need not wait for a slow query to notice it is
            # cancelled, the rollback starts at once and the late answer is dropped.
            cancellation=workflow.ActivityCancellationType.TRY_CANCEL,
        )

    async def advance(
        self,
        primary: int,
        canary: int,
        *,
        event: EventInput | None,
        status: CanaryStatusInput | None,
    ) -> AdvanceResult:
        weights = SetWeightsInput(ref=self.ref, primary=primary, canary=canary)
        session = self._sticky_session(canary) if self._sticky_session else None
        if session is not None:
            weights = weights.model_copy(update={"session": session})
        return await self._call(
            ActivityName.ADVANCE,
            AdvanceInput(weights=weights, event=event, status=status),
            result_type=AdvanceResult,
            options=policies.KUBERNETES,
            summary=f"set weights primary {primary} / canary {canary}",
            # A few API requests (~10–100 ms): as a local activity the step costs one workflow
            # task and one activity task less, and a killed worker's is retried with the
            # workflow task (seconds), not after the activity's timeout.
            local=self.local_advance,
        )

    async def record_event(self, event: EventInput) -> None:
        # A local activity: one marker in history instead of three events and a workflow task,
        # and it runs while the workflow task that asked for it is still open. Events are short
        # (a Kubernetes Event, webhooks and alerts with their own short timeouts).
        await workflow.execute_local_activity(
            ActivityName.RECORD_EVENT,
            event,
            result_type=type(None),
            start_to_close_timeout=policies.EVENTS.start_to_close,
            retry_policy=policies.EVENTS.retry,
            summary=f"event: {event.message}"[:120],
        )

    async def sync_canary_status(self, status: CanaryStatusInput) -> CanaryStatusResult:
        # A local activity, as events are: a read and at most one patch of the Canary's status.
        result = await workflow.execute_local_activity(
            ActivityName.SYNC_CANARY_STATUS,
            status,
            result_type=CanaryStatusResult,
            start_to_close_timeout=policies.EVENTS.start_to_close,
            retry_policy=policies.EVENTS.retry,
            summary=f"canary status {status.phase.value}, weight {status.canary_weight}",
        )
        assert isinstance(result, CanaryStatusResult)
        return result
