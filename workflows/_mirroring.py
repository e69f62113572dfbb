"""Canary with traffic mirroring (``mirror: true`` without ``iterations``), as Flagger's
``runCanary``: before any weight moves, one interval in which the primary's traffic (or
``mirrorWeight`` percent of it) is copied to the canary. Callers only ever get the primary's
answers; the canary's metrics judge the copies. When that interval passes, the mirror is removed
and the first weight step taken at once; the weighted canary loop goes on from there. The undo
stack's 100/0 carries no mirror, so a rollback restores the plain routes.
"""

from __future__ import annotations

from workflows import decisions
from workflows._iterations import IterationSteps


class MirroringSteps(IterationSteps):
    """The mirrored first step of a weighted canary."""

    async def _mirror_first(self) -> None:
        """Mirror, judge one interval of copies, then the first weight step without mirror."""
        if self._state.status.canary_weight > 0:
            return  # continued as new past the mirrored step
        if not await self._approved_mirror():
            return  # promote-full: nothing more to analyse
        await self._calls.set_weights(100, 0, mirrored=True)
        self._event(f"Start traffic mirroring to {self._display}", reason="Mirroring")
        while not await self._passing_interval():
            pass
        if self._state.requests.promote_full:
            return
        first = decisions.next_weight(self._input.canary.spec.analysis, 0)
        await self._set_weight(first)  # a plain route: mirroring stops with the first step
        self._event(f"Advance {self._display} canary weight {first}", reason="Advance")

    async def _approved_mirror(self) -> bool:
        """The first interval, then confirm-traffic-increase (Flagger asks before mirroring)."""
        while True:
            await self._wait_interval("analysis interval")
            if self._state.requests.promote_full:
                return False
            self._raise_if_new_revision()
            await self._check_rollback_hooks()
            if await self._gate("confirm-traffic-increase", waiting="traffic increase approval"):
                return True
