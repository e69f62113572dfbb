"""The rollout workflow on the time-skipping server with the fake activities of the workflow tests.

``tests.workflows.fakes`` registers every activity name with a scripted answer (all checks pass
unless told otherwise); one worker serves every rollout, each finding its ``FakeCluster`` by
workflow ID.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from bench._support import canary
from tests.workflows.fakes import ACTIVITIES, CLUSTERS, FakeCluster
from worker.runner import workflow_runner
from workflows.model import RolloutInput
from workflows.rollout import CanaryRolloutWorkflow
from workflows.spec import Canary

LOAD_TEST = {
    "name": "load-test",
    "url": "http://flagger-loadtester.test/",
    "timeout": "5s",
    "metadata": {"cmd": "hey -z 1m -q 10 -c 2 http://podinfo.test:9898/"},
}
METRICS = [
    {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}},
    {"name": "request-duration", "interval": "30s", "thresholdRange": {"max": 500}},
]


def article_canary(*, steps: int, interval: str = "30s", webhook: bool = True) -> Canary:
    """The article's podinfo Canary (two metrics, the load-test webhook) with ``steps`` steps."""
    return canary(
        "test",
        "podinfo",
        interval=interval,
        max_weight=10 * steps if steps <= 10 else steps,
        step_weight=10 if steps <= 10 else 1,
        metrics=METRICS,
        webhooks=[LOAD_TEST] if webhook else None,
    )


@contextlib.asynccontextmanager
async def fake_worker(client: Client) -> AsyncIterator[str]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CanaryRolloutWorkflow],
        activities=ACTIVITIES,
        workflow_runner=workflow_runner(),
        default_heartbeat_throttle_interval=timedelta(milliseconds=10),
        max_heartbeat_throttle_interval=timedelta(milliseconds=10),
    ):
        yield queue


async def start(
    client: Client, queue: str, spec: Canary, **fields: Any
) -> WorkflowHandle[Any, Any]:
    workflow_id = f"canary/bench/{uuid.uuid4().hex[:10]}"
    cluster = FakeCluster()
    CLUSTERS[workflow_id] = cluster
    return await client.start_workflow(
        CanaryRolloutWorkflow.run,
        RolloutInput(canary=spec, revision=cluster.revision, **fields),
        id=workflow_id,
        task_queue=queue,
    )
