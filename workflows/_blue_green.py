"""Blue/Green (``analysis.iterations`` without ``match``), as Flagger's ``runBlueGreen``.

The canary serves no production traffic while it is analysed: what reaches it comes through its
own Service (``<svc>-canary``, where the load test points) or, with ``mirror: true``, as copies of
the primary's traffic whose answers the callers never see. After ``iterations`` passing
intervals, and the confirm-promotion gate, all traffic switches to the canary at once; one more
passing interval under the whole load, then the canary is promoted and traffic returns to the
primary (which now runs the new version). A failure at any point rolls back: the undo stack
routes everything to the primary without a mirror.
"""

from __future__ import annotations

from workflows._iterations import IterationSteps
from workflows.spec import Strategy


class BlueGreenSteps(IterationSteps):
    """The Blue/Green piece of ``CanaryRolloutWorkflow``'s state machine."""

    async def _blue_green(self) -> None:
        """Iterations until all traffic is on the canary and it passed once more (returns)."""
        if self._state.status.iterations == 0:
            await self._start_blue_green()
        while True:
            if not await self._passing_interval():
                continue
            if self._state.requests.promote_full:
                return
            done, wanted = self._state.status.iterations, self._iterations_wanted
            if done > wanted:
                return  # the canary held all the traffic for an interval: promote
            if done < wanted:
                self._advance_iteration()
            elif await self._promotion_approved():
                await self._switch_to_canary()

    async def _start_blue_green(self) -> None:
        # Flagger's first tick: the pre-rollout hooks ran; mirroring starts and it counts.
        if self._input.canary.spec.analysis.strategy == Strategy.BLUE_GREEN_MIRRORING:
            await self._calls.set_weights(100, 0, mirrored=True)
            self._event(f"Start traffic mirroring to {self._display}", reason="Mirroring")
        self._advance_iteration()

    async def _switch_to_canary(self) -> None:
        mirrored = self._input.canary.spec.analysis.mirror
        what = "Stop traffic mirroring and route" if mirrored else "Routing"
        # Flagger's wording has no canary name (the ``flagger-events`` patch drops it).
        suffix = "" if self._flagger_events else f" {self._display}"
        self._event(f"{what} all traffic to canary{suffix}", reason="Advance")
        await self._calls.set_weights(0, 100)
        self._state.set(canary_weight=100, iterations=self._state.status.iterations + 1)
