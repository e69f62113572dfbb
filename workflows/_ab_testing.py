"""A/B testing (``analysis.match`` with ``iterations``), as Flagger's ``runAB``.

Requests that match (a header, a cookie through the ``cookie`` header, the caller's labels) go
to the canary; everybody else stays on the primary. The router renders that as two routes
(matched → primary/canary weights, the rest → primary), so routing the matched users is setting
the weights 0/100: the undo stack's 100/0 sends them back. After ``iterations`` passing
intervals and the confirm-promotion gate, the canary is promoted: everyone gets the new version
from the primary. The Canary's ``canaryWeight`` stays 0, as Flagger's does: no share of all the
traffic moved, only the matched users.
"""

from __future__ import annotations

from workflows._iterations import IterationSteps


class ABTestingSteps(IterationSteps):
    """The A/B testing piece of ``CanaryRolloutWorkflow``'s state machine."""

    async def _ab_testing(self) -> None:
        """Iterations with the matched users on the canary until it may be promoted (returns)."""
        if self._state.status.iterations == 0:
            await self._route_matched_to_canary()
        while True:
            if not await self._passing_interval():
                continue
            if self._state.requests.promote_full:
                return
            if self._state.status.iterations < self._iterations_wanted:
                self._advance_iteration()
            elif await self._promotion_approved():
                return

    async def _route_matched_to_canary(self) -> None:
        await self._calls.set_weights(0, 100)
        self._advance_iteration()
