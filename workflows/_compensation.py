"""The undo stack of a rollout: registered before each mutation, run in reverse on rollback.

Registering *before* the mutating call matters: if the call is cancelled half-way (abort, workflow
cancellation) its effect may already be in the cluster, and the undo must still run. Every undo is
idempotent (the activities converge), so undoing a step that never happened does no harm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio import workflow
from temporalio.exceptions import ActivityError


@dataclass(frozen=True)
class Undo:
    key: str
    description: str
    run: Callable[[], Awaitable[object]]


class Compensations:
    """An ordered set of undo steps; registering a key twice keeps the first position."""

    def __init__(self) -> None:
        self._steps: list[Undo] = []

    def register(self, key: str, description: str, run: Callable[[], Awaitable[object]]) -> None:
        if all(step.key != key for step in self._steps):
            self._steps.append(Undo(key, description, run))

    def discard(self, key: str) -> None:
        self._steps = [step for step in self._steps if step.key != key]

    @property
    def keys(self) -> list[str]:
        """The registered keys, oldest first (what continue-as-new carries)."""
        return [step.key for step in self._steps]

    @property
    def descriptions(self) -> list[str]:
        return [step.description for step in self._steps]

    async def run_all(self) -> list[str]:
        """Run every undo, newest first, even if the workflow is being cancelled.

        The steps run in a task awaited through ``asyncio.shield``: a further cancellation
        request cannot stop a rollback half-way. Returns the descriptions of undos that failed.
        """
        task = asyncio.create_task(self._run_in_reverse())
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                # Keep waiting: the rollback must finish whatever happens to the caller.
                continue

    async def _run_in_reverse(self) -> list[str]:
        failed: list[str] = []
        for step in reversed(self._steps):
            try:
                await step.run()
            except ActivityError as err:
                # Go on with the other undos: traffic back to the primary matters even if
                # scaling down failed, and the failure is reported in the status.
                workflow.logger.warning("Undo %r failed: %s", step.description, err)
                failed.append(step.description)
        self._steps = []
        return failed
