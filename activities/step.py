"""One analysis step in two activities: every check at once, then the weight change.

A step used to cost an activity per check, one for the weights, a local activity for its event
and one for the Canary's status, and a search-attribute upsert: six or more Temporal actions.
Here it is two activities (plus the interval timer):

- `analyse_step` calls the step's ``rollout`` webhooks in order and then, if all passed, queries
  every metric concurrently (Flagger's order), and returns each answer: the Web UI still shows
  every check, in the activity's result. It is asynchronous and heartbeats every second, so a
  worker that dies mid-step is noticed within the heartbeat timeout (seconds, not the minute of
  a start-to-close timeout), and an abort cancels it at once: the checks run on threads (the
  clients are synchronous) and a cancelled step stops waiting for them; their late answers are
  dropped. Webhook retries (the spec's ``retries``) happen here, with Temporal's backoff.
- `advance` sets the weights and then writes what the step records about it, the "Advance"
  event and the Canary's status, so they cost no action of their own. Those writes never fail
  the weight change: like events, they are logged and the next change writes the status again.
  The workflow runs it as a local activity (a few API requests): no activity task of its own, and
  the workflow goes on (the next interval's timer) in the task that ran it. Its result names the
  event it posted (type, reason, message): a local activity leaves only its result in history.

The pieces are the existing activity classes' (`AnalysisActivities`, `RouterActivities`,
`CanaryStatusActivities`), so a check or a weight change behaves exactly as its own activity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.analysis.activities import AnalysisActivities
from activities.errors import InvalidSpec, KubernetesError
from activities.kubernetes.canary_status import CanaryStatusActivities
from activities.router.activities import RouterActivities
from workflows.activity_api import (
    ActivityName,
    AdvanceInput,
    AdvanceResult,
    MetricCheckInput,
    StepAnalysis,
    StepAnalysisInput,
    WebhookInput,
    WebhookOutcome,
    WebhookResult,
)
from workflows.decisions import provider_error
from workflows.model import MetricResult
from workflows.spec import MetricSpec, WebhookSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEAT_EVERY = 1.0
"""Seconds between heartbeats of `analyse_step` (its heartbeat timeout is a few of these)."""

RETRY_BACKOFF = (1.0, 2.0, 4.0, 8.0)
"""Seconds before each further webhook attempt (Temporal's default policy: 1 s, doubling)."""


class StepActivities:
    """``analyse_step`` and ``advance``, built on the other activity classes.

    ``executor``: the threads the synchronous checks run on (the worker's activity threads).
    ``sleep``: a test seam for the backoff between webhook attempts.
    """

    def __init__(
        self,
        *,
        analysis: AnalysisActivities,
        router: RouterActivities,
        status: CanaryStatusActivities,
        executor: Executor | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._analysis = analysis
        self._router = router
        self._status = status
        self._executor = executor
        self._sleep = sleep

    async def _on_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # --- analyse_step ---------------------------------------------------------------------

    @activity.defn(name=ActivityName.ANALYSE_STEP)
    async def analyse_step(self, request: StepAnalysisInput) -> StepAnalysis:
        """Every check of one step: webhooks in order, then the metrics concurrently."""
        heartbeat = asyncio.create_task(_heartbeat_loop())
        try:
            outcomes: list[WebhookOutcome] = []
            for hook in request.webhooks:
                outcome = await self._webhook(request, hook)
                outcomes.append(outcome)
                if not outcome.result.ok:
                    return StepAnalysis(webhooks=outcomes)
            metrics = await asyncio.gather(*(self._metric(request, m) for m in request.metrics))
            return StepAnalysis(webhooks=outcomes, metrics=list(metrics))
        finally:
            heartbeat.cancel()

    async def _webhook(self, request: StepAnalysisInput, hook: WebhookSpec) -> WebhookOutcome:
        call = WebhookInput(
            ref=request.ref, webhook=hook, phase=request.phase, checksum=request.checksum
        )
        attempts = hook.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                result, retryable = await self._on_thread(
                    lambda: self._analysis.webhooks.attempt(call)
                )
            except InvalidSpec:
                raise  # already a non-retryable ApplicationError
            except KubernetesError as exc:  # reading its secretRef
                result, retryable = WebhookResult(ok=False, message=f"{hook.name}: {exc}"), True
            if result.ok or not retryable or attempt == attempts:
                return WebhookOutcome(name=hook.name, result=result, attempts=attempt)
            await self._sleep(RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF)) - 1])
        raise AssertionError("unreachable")  # pragma: no cover

    async def _metric(self, request: StepAnalysisInput, metric: MetricSpec) -> MetricResult:
        check = MetricCheckInput(ref=request.ref, metric=metric)
        try:
            return await self._on_thread(lambda: self._analysis.metrics.check(check))
        except InvalidSpec:
            raise  # a MetricTemplate that cannot work: the rollout fails with its reason
        except Exception as exc:
            # The check's own failure (a MetricTemplate unreadable, a bug) is that metric's
            # provider error; the step's other checks still count.
            log.warning("Metric check %s failed: %s", metric.name, exc)
            return provider_error(metric.name, exc)

    # --- advance ----------------------------------------------------------------------------

    @activity.defn(name=ActivityName.ADVANCE)
    def advance(self, request: AdvanceInput) -> AdvanceResult:
        """Set the weights, then write the step's status and event (never failing for them)."""
        weights = self._router.set_weights(request.weights)
        exists: bool | None = None
        canary_uid: str | None = None  # read by the status write: the event need not read it
        if request.status is not None:
            try:
                result, canary_uid = self._status.sync(request.status)
                exists = result.exists
            except (KubernetesError, ApplicationError) as exc:
                log.warning("Writing the Canary's status failed: %s", exc)
        if request.event is not None:
            try:
                self._analysis.events.record(request.event, canary_uid=canary_uid)
            except (KubernetesError, ApplicationError) as exc:
                log.warning("Recording event %r failed: %s", request.event.message, exc)
        return AdvanceResult(
            weights=weights, event=request.event and request.event.posted(), canary_exists=exists
        )


async def _heartbeat_loop() -> None:
    # The first heartbeat after a second, not at once: the heartbeat timeout runs from the
    # activity's start either way, and a step whose checks answer within the second (most)
    # then costs no heartbeat call to the server at all.
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        activity.heartbeat()
