"""What A/B testing and Blue/Green share: analysis intervals counted in ``status.iterations``.

Flagger's iterative strategies (``runAB`` and ``runBlueGreen`` in ``pkg/controller/
scheduler.go``) move no weights step by step: every interval runs the rollout webhooks and the
metric checks, and each passing interval counts one iteration. Pre-rollout hooks stand in for the
first interval's checks (nothing was served by the canary yet), as in the canary loop.
"""

from __future__ import annotations

from workflows._steps import AnalysisSteps
from workflows.model import Phase


class IterationSteps(AnalysisSteps):
    """The interval of an iterative strategy and its iteration count."""

    @property
    def _iterations_wanted(self) -> int:
        return self._input.canary.spec.analysis.iterations

    async def _passing_interval(self) -> bool:
        """Wait one interval, then judge it: True when its checks passed (or promote-full).

        Gates before the checks, as in the step loop: a new revision restarts the analysis,
        a rollback webhook answering 2xx rolls back.
        """
        await self._wait_interval("analysis interval")
        if self._state.requests.promote_full:
            return True
        self._raise_if_new_revision()
        await self._check_rollback_hooks()
        return await self._analysis_passed()

    def _advance_iteration(self) -> None:
        """Count one iteration, with Flagger's event ("canary iteration 3/10")."""
        done = self._state.status.iterations + 1
        if self._state.requests.promote and done < self._iterations_wanted:
            # An operator's promote skips the remaining iterations, as it skips weight steps.
            done = self._iterations_wanted
        self._state.set(iterations=done)
        self._event(
            f"Advance {self._display} canary iteration {done}/{self._iterations_wanted}",
            reason="Advance",
        )

    async def _promotion_approved(self) -> bool:
        """confirm-promotion: a refusal waits in WaitingPromotion and asks next interval."""
        if await self._gate("confirm-promotion", waiting="promotion approval"):
            return True
        self._state.set_phase(Phase.WAITING_PROMOTION)
        return False
