"""Workflows that read the wall clock, to show which workflow code the sandbox still guards.

Kept apart from the tests: the sandbox re-imports a workflow's module for every run, and this
one imports nothing but the SDK, the stdlib and ``clock_helpers``.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    # ``from package.module import name``: the form the sandbox passes through (``from package
    # import module`` re-imports the module when the package was imported in the sandbox).
    from tests.workflows.clock_helpers import wall_clock


@workflow.defn(name="ClockInWorkflowModule", failure_exception_types=[workflow.NondeterminismError])
class ClockInWorkflowModule:
    """Calls ``datetime.now()`` in the workflow's own module."""

    @workflow.run
    async def run(self) -> str:
        return datetime.now().isoformat()


@workflow.defn(
    name="ClockInPassedThroughModule", failure_exception_types=[workflow.NondeterminismError]
)
class ClockInPassedThroughModule:
    """Calls ``datetime.now()`` in a module whose import is passed through the sandbox."""

    @workflow.run
    async def run(self) -> str:
        return wall_clock()
