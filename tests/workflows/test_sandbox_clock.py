"""Which workflow code the worker's sandbox keeps deterministic.

The sandbox re-imports a workflow's own module for every run, with ``datetime``, ``time``,
``random``, … replaced by guards that refuse non-deterministic calls; modules whose import is
passed through are the worker's shared copies, unguarded. ``workflows.rollout`` passes the rest
of ``workflows`` through (one copy of its pydantic models for every rollout), so only its own code
is guarded; passing ``workflows.rollout`` itself through would save its per-run copy
(``bench.memory_probe --passthrough workflows``) and leave no workflow code guarded. These tests
pin both facts on a real (time-skipping) server with the product's worker (``build_worker``).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from tests.workflows.clock_workflows import ClockInPassedThroughModule, ClockInWorkflowModule
from worker.app import build_worker
from worker.settings import Settings, TemporalSettings

CLOCK_WORKFLOWS = [ClockInWorkflowModule, ClockInPassedThroughModule]


async def _run(env: WorkflowEnvironment, worker: Worker, workflow: Any, queue: str) -> str:
    async with worker:
        result: str = await env.client.execute_workflow(
            workflow.run, id=f"clock-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        return result


def _product_worker(env: WorkflowEnvironment, queue: str) -> Worker:
    settings = Settings(temporal=TemporalSettings(task_queue=queue))
    return build_worker(
        env.client, settings, api_client=None, activities=[], workflows=CLOCK_WORKFLOWS
    )


async def test_the_product_sandbox_refuses_the_clock_in_the_workflow_module(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    queue = f"clock-{uuid.uuid4().hex[:8]}"
    worker = _product_worker(time_skipping_env, queue)
    with pytest.raises(WorkflowFailureError) as failure:
        await _run(time_skipping_env, worker, ClockInWorkflowModule, queue)
    assert "datetime.datetime.now" in str(failure.value.cause)


async def test_code_in_a_passed_through_module_reads_the_clock_unrefused(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    queue = f"clock-{uuid.uuid4().hex[:8]}"
    worker = _product_worker(time_skipping_env, queue)
    assert await _run(time_skipping_env, worker, ClockInPassedThroughModule, queue)


async def test_passing_the_workflow_module_through_lets_its_clock_through(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    queue = f"clock-{uuid.uuid4().hex[:8]}"
    module = ClockInWorkflowModule.__module__
    restrictions = SandboxRestrictions.default.with_passthrough_modules(module)
    worker = Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=CLOCK_WORKFLOWS,
        workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
    )
    assert await _run(time_skipping_env, worker, ClockInWorkflowModule, queue)
