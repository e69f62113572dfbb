"""Workflow-test fixtures: the rollout workflow on the time-skipping server with fake activities."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.workflow import UnfinishedSignalHandlersWarning, UnfinishedUpdateHandlersWarning

from tests import canaries
from tests.workflows.fakes import ACTIVITIES, CLUSTERS, FakeCluster, new_workflow_id
from worker.runner import workflow_runner
from worker.search_attributes import register_search_attributes
from workflows.activity_api import ActivityName
from workflows.model import ROLLOUT_FAILED_ERROR, RolloutInput, RolloutResult, RolloutStatus
from workflows.rollout import CanaryRolloutWorkflow
from workflows.spec import Canary

# Unique per session: two test sessions that ever reach the same server (a port reused by a
# concurrent run) must not serve each other's rollouts.
TASK_QUEUE = f"coalmine-workflow-tests-{uuid.uuid4().hex[:8]}"


def make_canary(**analysis: Any) -> Canary:
    """podinfo.test as in the article: interval 30s, threshold 5, stepWeight 10 up to 50."""
    spec_analysis: dict[str, Any] = {
        "interval": "30s",
        "threshold": 5,
        "maxWeight": 50,
        "stepWeight": 10,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"},
        ],
    }
    spec_analysis.update(analysis)
    extra = {k: spec_analysis.pop(k) for k in ("skipAnalysis",) if k in spec_analysis}
    return canaries.canary("test", analysis=spec_analysis, **extra)


def hook(name: str, type: str, url: str = "http://loadtester.test/") -> dict[str, Any]:
    return {"name": name, "type": type, "url": url}


class Rollouts:
    """Start rollouts on the session's worker, each with its own fake cluster."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.client = env.client
        self.task_queue = TASK_QUEUE

    async def start(
        self, cluster: FakeCluster, canary: Canary | None = None, **fields: Any
    ) -> WorkflowHandle[Any, RolloutResult]:
        workflow_id = new_workflow_id()
        CLUSTERS[workflow_id] = cluster
        fields.setdefault("revision", cluster.revision)
        rollout = RolloutInput(canary=canary or make_canary(), **fields)
        return await self.client.start_workflow(
            CanaryRolloutWorkflow.run, rollout, id=workflow_id, task_queue=self.task_queue
        )

    async def status(self, handle: WorkflowHandle[Any, Any]) -> RolloutStatus:
        return await handle.query(CanaryRolloutWorkflow.status)

    async def wait_for(
        self, handle: WorkflowHandle[Any, Any], predicate: Callable[[RolloutStatus], bool]
    ) -> RolloutStatus:
        """Poll the status query until the predicate holds (real time: keep it short)."""
        for _ in range(500):
            status = await self.status(handle)
            if predicate(status):
                return status
            await asyncio.sleep(0.01)
        raise AssertionError(f"status never matched: {status}")

    async def advance_until(
        self,
        handle: WorkflowHandle[Any, Any],
        predicate: Callable[[RolloutStatus], bool],
        *,
        step: float = 10,
    ) -> RolloutStatus:
        """Skip time step by step until the predicate holds, without awaiting the result.

        Awaiting ``result()`` lets the server skip time freely: a paused rollout (no timer)
        would jump straight to the workflow's timeout. Skipping explicitly keeps time in hand.
        """
        for _ in range(200):
            status = await self.status(handle)
            if predicate(status):
                return status
            await self.env.sleep(step)
        raise AssertionError(f"status never matched: {status}")


@pytest.fixture(scope="session")
async def rollout_client(time_skipping_env: WorkflowEnvironment) -> Client:
    await register_search_attributes(time_skipping_env.client)
    return time_skipping_env.client


@pytest.fixture(scope="session")
async def rollout_worker(rollout_client: Client) -> AsyncIterator[Worker]:
    async with Worker(
        rollout_client,
        task_queue=TASK_QUEUE,
        workflows=[CanaryRolloutWorkflow],
        activities=ACTIVITIES,
        workflow_runner=workflow_runner(),
        # Cancellation reaches an activity with a heartbeat's answer: answer quickly in tests.
        default_heartbeat_throttle_interval=timedelta(milliseconds=10),
        max_heartbeat_throttle_interval=timedelta(milliseconds=10),
    ) as worker:
        yield worker


@pytest.fixture
def rollouts(time_skipping_env: WorkflowEnvironment, rollout_worker: Worker) -> Rollouts:
    return Rollouts(time_skipping_env)


@pytest.fixture(autouse=True)
def no_unfinished_handlers() -> Iterator[None]:
    """A workflow that exits with handlers still running is a test error, not a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnfinishedUpdateHandlersWarning)
        warnings.simplefilter("always", UnfinishedSignalHandlersWarning)
        yield
    unfinished = [
        w
        for w in caught
        if issubclass(w.category, UnfinishedUpdateHandlersWarning | UnfinishedSignalHandlersWarning)
    ]
    assert not unfinished, [str(w.message) for w in unfinished]


async def expect_rollback(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    """The rollout failed as rolled back: the typed error CI and the CLI see."""
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert cause.type == ROLLOUT_FAILED_ERROR
    assert cause.non_retryable
    return cause


def weights(cluster: FakeCluster) -> list[tuple[int, int]]:
    return [(a.primary, a.canary) for a in cluster.called(ActivityName.SET_WEIGHTS)]


def event_messages(status: RolloutStatus) -> list[str]:
    return [e.message for e in status.events]


async def run_histories(client: Client, handle: WorkflowHandle[Any, Any]) -> list[WorkflowHistory]:
    """Every run's history of a rollout, first run first, following continue-as-new."""
    runs: list[WorkflowHistory] = []
    run_id = handle.first_execution_run_id or handle.result_run_id
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs.append(history)
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            break
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs
