"""The analysis: manual gates, pre-rollout hooks and the step loop, with Flagger's semantics.

Webhook and metric failures are answers, not crashes: an activity that fails after its retries
counts as a failed webhook or a "provider error" check, so a flaky backend is judged by the
failed-check threshold like any bad number.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import decisions
from workflows._core import RestartAnalysis, RollbackRequested, RolloutCore
from workflows.activity_api import EventInput, WebhookResult
from workflows.model import MetricResult, Phase
from workflows.spec import MetricSpec, WebhookSpec, WebhookType

EVERY_FAILED_CHECK_PATCH = "every-failed-check-event"
"""``workflow.patched`` ID: a Halt event for each failing check of a step, not only the last."""


FLAGGER_EVENTS_PATCH = "flagger-events"
"""``workflow.patched`` ID of the events current Flagger records that runs before it did not: each
webhook check that passed, the promotion's traffic routing, "New revision detected! Scaling up"."""

_PASSED: dict[str, str] = {
    "confirm-rollout": "Confirm-rollout",
    "confirm-traffic-increase": "Confirm-traffic-increase",
    "confirm-promotion": "Confirm-promotion",
    "pre-rollout": "Pre-rollout",
}
"""Flagger's name of each gate type in its "… check NAME passed" events."""


class AnalysisSteps(RolloutCore):
    """Gates, checks and the step loop of ``CanaryRolloutWorkflow``."""

    async def _hook(self, hook: WebhookSpec) -> WebhookResult:
        try:
            return await self._calls.call_webhook(
                hook, phase=self._state.status.phase, revision=self._state.status.revision
            )
        except ActivityError as err:
            cause = err.cause or err
            return WebhookResult(ok=False, message=f"{hook.name} failed: {cause}")

    async def _refusing_hook(self, kind: WebhookType) -> str | None:
        """Ask every webhook of a gate type in order; the name of the first refusing one.

        Each one that passes is an event, worded as Flagger's ("Pre-rollout check load-test
        passed"), with the ``flagger-events`` patch."""
        for hook in self._input.canary.spec.analysis.webhooks_of(kind):
            if not (await self._hook(hook)).ok:
                return hook.name
            if self._flagger_events and kind in _PASSED:
                self._event(f"{_PASSED[kind]} check {hook.name} passed", reason="Synced")
        return None

    async def _gate(self, kind: WebhookType, *, waiting: str) -> bool:
        """A manual gate (confirm-*): open, or approved by an operator's promote."""
        requests = self._state.requests
        if requests.promote or requests.promote_full:
            return True
        refusing = await self._refusing_hook(kind)
        if refusing is None:
            return True
        message = f"Halt {self._display} advancement waiting for {waiting} {refusing}"
        if self._state.status.message != message:  # once per wait, not every interval
            self._event(message, reason="Waiting", warning=True, severity="warn")
        return False

    async def _check_rollback_hooks(self) -> None:
        """Rollback webhooks: any that answers 2xx rolls the canary back now."""
        for hook in self._input.canary.spec.analysis.webhooks_of("rollback"):
            if (await self._hook(hook)).ok:
                if self._flagger_events:
                    self._event(f"Rollback check {hook.name} passed", reason="Synced", warning=True)
                raise RollbackRequested(f"Rolling back {self._display} manual webhook invoked")
            if self._flagger_events:
                message = f"Rollback hook {hook.name} not signaling a rollback"
                self._event(message, reason="Synced")

    # --- the Waiting gate ------------------------------------------------------------------

    async def _wait_for_confirm_rollout(self) -> None:
        """confirm-rollout: a refusal stays in Waiting and asks again every interval."""
        if not self._input.canary.spec.analysis.webhooks_of("confirm-rollout"):
            return
        while not await self._gate("confirm-rollout", waiting="approval"):
            self._state.set_phase(Phase.WAITING)
            await self._wait_interval("waiting for approval, next ask in")
            await self._check_rollback_hooks()
            self._take_new_revision()

    def _take_new_revision(self) -> bool:
        """Adopt a revision an operator sent; True when it replaced the one under analysis."""
        revision = self._state.requests.new_revision
        self._state.requests.new_revision = None
        if revision is None or revision == self._state.status.revision:
            return False
        self._state.set(revision=revision)
        return True

    # --- checks ------------------------------------------------------------------------------

    def _count_failed_check(self, *, source: str, outcome: str, message: str) -> None:
        self._state.add_failed_check(source=source, outcome=outcome, message=message)
        self._state.set(failed_checks=self._state.status.failed_checks + 1)
        self._event(f"Halt {self._display} advancement {message}", reason="Halt", warning=True)
        threshold = self._input.canary.spec.analysis.threshold
        if decisions.threshold_reached(self._state.status.failed_checks, threshold):
            raise RollbackRequested(
                f"Rolling back {self._display} failed checks threshold reached "
                f"{self._state.status.failed_checks}"
            )

    async def _pre_rollout(self) -> None:
        """pre-rollout hooks: once before traffic shifts; a failure counts and is retried."""
        while True:
            refusing = await self._refusing_hook("pre-rollout")
            if refusing is None:
                return
            self._count_failed_check(
                source=refusing, outcome="webhook", message=f"pre-rollout check {refusing} failed"
            )
            await self._wait_interval("pre-rollout retry in")
            if self._state.requests.promote_full:
                return
            self._raise_if_new_revision()

    async def _metric(self, metric: MetricSpec) -> MetricResult:
        try:
            return await self._calls.check_metric(metric)
        except ActivityError as err:
            return decisions.provider_error(metric.name, err.cause or err)

    async def _analysis_passed(self) -> bool:
        """rollout webhooks, then every metric concurrently; False (and counted) on a failure."""
        if self._one_activity_step:
            return await self._step_checks_passed()
        refusing = await self._refusing_hook("rollout")
        if refusing is not None:
            self._count_failed_webhook(refusing)
            return False
        metrics = self._input.canary.spec.analysis.metrics
        # gather in a workflow is deterministic: the SDK's event loop schedules in order.
        results = list(await asyncio.gather(*(self._metric(m) for m in metrics)))
        return self._metrics_passed(results)

    async def _step_checks_passed(self) -> bool:
        """The same checks in one activity (``analyse_step``): one action per step."""
        analysis = self._input.canary.spec.analysis
        hooks = analysis.webhooks_of("rollout")
        if not hooks and not analysis.metrics:
            return True
        try:
            result = await self._calls.analyse_step(
                hooks,
                analysis.metrics,
                phase=self._state.status.phase,
                revision=self._state.status.revision,
            )
        except ActivityError as err:
            # Out of retries (a worker lost three times, a MetricTemplate unreadable): the step
            # failed like a check does, and the failed-check threshold decides.
            message = f"analysis failed: {err.cause or err}"
            self._count_failed_check(source="analysis", outcome="error", message=message)
            return False
        refusing = result.refusing_webhook
        if refusing is not None:
            self._count_failed_webhook(refusing)
            return False
        return self._metrics_passed(result.metrics)

    def _count_failed_webhook(self, name: str) -> None:
        message = f"rollout check {name} failed"
        self._count_failed_check(source=name, outcome="webhook", message=message)

    def _metrics_passed(self, results: list[MetricResult]) -> bool:
        """Record the step's metric results; count a failure (every failing one posted)."""
        self._state.record_metrics(results)
        failed = decisions.failed_metrics(results)
        # Every failing check of the step is posted, as Flagger posts each; the step counts once.
        # (The one-activity step asks only when a check failed: no marker in a passing step.)
        every_event = (bool(failed) or not self._one_activity_step) and workflow.patched(
            EVERY_FAILED_CHECK_PATCH
        )
        for result in failed[:-1]:
            self._state.add_failed_check(
                source=result.name, outcome=result.outcome.value, message=result.message
            )
            if every_event:
                message = f"Halt {self._display} advancement {result.message}"
                self._event(message, reason="Halt", warning=True)
        if failed:
            last = failed[-1]
            self._count_failed_check(
                source=last.name, outcome=last.outcome.value, message=last.message
            )
        return not failed

    # --- the step loop -----------------------------------------------------------------------

    def _raise_if_new_revision(self) -> None:
        if self._take_new_revision():
            raise RestartAnalysis

    async def _set_weight(self, canary: int) -> None:
        await self._calls.set_weights(100 - canary, canary)
        self._state.set(canary_weight=canary)

    async def _step_loop(self) -> None:
        """Interval after interval until the canary may be promoted (returns) or rolls back."""
        analysis = self._input.canary.spec.analysis
        top = decisions.max_weight(analysis)
        while True:
            await self._wait_interval("analysis interval")
            if self._state.requests.promote_full:
                return
            self._raise_if_new_revision()
            await self._check_rollback_hooks()
            self._state.set(iterations=self._state.status.iterations + 1)
            weight = self._state.status.canary_weight
            # Before the first weight step no traffic reaches the canary, so its metrics could
            # only say "no data": as Flagger does, nothing is judged at weight 0 (the pre-rollout
            # hooks were the gate) and the first step is taken at once.
            if weight > 0 and not await self._analysis_passed():
                continue
            if weight >= top:
                if await self._gate("confirm-promotion", waiting="promotion approval"):
                    return
                self._state.set_phase(Phase.WAITING_PROMOTION)
                continue
            if self._state.requests.promote:
                # An operator's promote skips the remaining steps: straight to the maximum weight.
                new = top
            elif await self._gate("confirm-traffic-increase", waiting="traffic increase approval"):
                new = decisions.next_weight(analysis, weight)
            else:
                continue
            await self._advance(new)

    async def _advance(self, canary: int) -> None:
        """The next weight, with its "Advance" event (and the Canary's status, patched in: in
        the same activity, so the step's change costs one action)."""
        message = f"Advance {self._display} canary weight {canary}"
        if not self._one_activity_step:
            await self._set_weight(canary)
            self._event(message, reason="Advance")
            return
        event: list[EventInput] = []

        def change() -> None:
            self._state.set(canary_weight=canary)
            event.append(self._event_input(message, reason="Advance"))

        status = await self._carried_status(change)
        result = await self._calls.advance(100 - canary, canary, event=event[0], status=status)
        if status is not None:
            self._carried_status_result(result.canary_exists)
