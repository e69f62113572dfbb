"""The worker's sandbox (`worker.runner`) converts every payload with the context the SDK's own
sandbox gives it: it only answers the SDK's context questions without a round trip into the
sandbox. A rollout (steps, a failed check, events, the Canary's status, promotion) runs under each
runner with a payload converter that records every context it is given; the records match."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    SerializationContext,
    WorkflowSerializationContext,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tests.workflows.conftest import Rollouts, hook, make_canary
from tests.workflows.fakes import ACTIVITIES, FakeCluster, failing, passing
from worker.runner import RolloutSandbox, workflow_runner
from workflows.activity_api import ActivityName
from workflows.model import Phase
from workflows.rollout import CanaryRolloutWorkflow

SEEN: list[SerializationContext] = []
"""Every context a payload converter was given, in this process."""


class RecordingConverter(PydanticPayloadConverter):
    def with_context(self, context: SerializationContext) -> RecordingConverter:
        SEEN.append(context)
        return super().with_context(context)


def _anonymous(context: SerializationContext) -> Any:
    """The context without what differs between the two rollouts (workflow ID, task queue)."""
    if isinstance(context, ActivitySerializationContext):
        return replace(context, workflow_id="", activity_task_queue="")
    if isinstance(context, WorkflowSerializationContext):
        return replace(context, workflow_id="")
    return context


async def _contexts(env: WorkflowEnvironment, runner: WorkflowRunner, queue: str) -> Counter[Any]:
    # The environment's client with the recording converter (and its time-skipping interceptor).
    config = env.client.config()
    config["data_converter"] = DataConverter(payload_converter_class=RecordingConverter)
    client = Client(**config)
    rollouts = Rollouts(env)
    rollouts.client, rollouts.task_queue = client, queue
    good, bad = passing("request-success-rate"), failing("request-success-rate")
    cluster = FakeCluster(metrics={"request-success-rate": [good, bad, good]})
    canary = make_canary(webhooks=[hook("load", "rollout")])
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CanaryRolloutWorkflow],
        activities=ACTIVITIES,
        workflow_runner=runner,
    ):
        handle = await rollouts.start(cluster, canary)
        start = len(SEEN)
        assert (await handle.result()).phase == Phase.SUCCEEDED
        ours = [c for c in SEEN[start:] if getattr(c, "workflow_id", None) == handle.id]
    return Counter(map(_anonymous, ours))


async def test_the_rollout_sandbox_gives_every_payload_the_sdks_context(
    time_skipping_env: WorkflowEnvironment, rollout_client: Client
) -> None:
    assert isinstance(workflow_runner(), RolloutSandbox)
    sdk = await _contexts(time_skipping_env, SandboxedWorkflowRunner(), "runner-sdk")
    ours = await _contexts(time_skipping_env, workflow_runner(), "runner-ours")
    assert ours == sdk
    # Both saw the activities' own contexts, the local ``advance`` among them.
    types = {c.activity_type for c in ours if isinstance(c, ActivitySerializationContext)}
    assert {ActivityName.ANALYSE_STEP, ActivityName.ADVANCE, ActivityName.RECORD_EVENT} <= types
    assert any(isinstance(c, WorkflowSerializationContext) for c in ours)
