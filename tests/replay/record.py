"""Record the workflow histories the replay test replays: ``python -m tests.replay.record``.

Runs the rollout workflow on the time-skipping server with the fake activities of the workflow
tests, in the scenarios that matter for determinism, and stores each history as JSON in
``tests/replay/histories/``. Re-record only on purpose: a replay failure against the stored
histories means a change would break running rollouts (put it behind ``workflow.patched``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.conftest import TEMPORAL_TEST_SERVER
from tests.workflows.conftest import (
    TASK_QUEUE,
    Rollouts,
    hook,
    make_canary,
    register_search_attributes,
    run_histories,
)
from tests.workflows.fakes import ACTIVITIES, FakeCluster, failing, passing
from worker.runner import workflow_runner
from workflows.activity_api import ActivityName
from workflows.model import NewRevisionRequest, OperatorRequest, PromoteRequest
from workflows.rollout import CanaryRolloutWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"


async def _succeeded(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    cluster = FakeCluster(webhooks={"load": [True], "notify": [True]})
    canary = make_canary(
        stepWeightPromotion=25,
        webhooks=[hook("load", "rollout"), hook("notify", "post-rollout")],
    )
    handle = await rollouts.start(cluster, canary, requested_by="ci", reason="pipeline 1")
    await handle.result()
    return handle


async def _rolled_back(rollouts: Rollouts, threshold: int = 3) -> WorkflowHandle[Any, Any]:
    good, bad = passing("request-success-rate"), failing("request-success-rate")
    cluster = FakeCluster(metrics={"request-success-rate": [good, good, bad]})
    handle = await rollouts.start(cluster, make_canary(threshold=threshold))
    with contextlib.suppress(WorkflowFailureError):  # rolled back, as intended
        await handle.result()
    return handle


async def _operated(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """Updates and signals in history: pause/resume, a new revision, promote."""
    cluster = FakeCluster()
    handles: list[WorkflowHandle[Any, Any]] = []

    def update(name: str, request: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: handles[0].execute_update(name, request)

    cluster.on(
        ActivityName.SET_WEIGHTS, lambda a: a.canary == 10, update("pause", OperatorRequest())
    )

    async def ci_sets_the_image_then_tells() -> None:
        cluster.revision = "rev-3"
        await handles[0].execute_update("new_revision", NewRevisionRequest(revision="rev-3"))

    cluster.on(ActivityName.SET_WEIGHTS, lambda a: a.canary == 20, ci_sets_the_image_then_tells)
    cluster.on(
        ActivityName.SET_WEIGHTS,
        lambda a: a.canary == 30,
        lambda: handles[0].signal("promote", PromoteRequest()),
    )
    handles.append(await rollouts.start(cluster))
    await rollouts.advance_until(handles[0], lambda s: s.paused)
    await handles[0].execute_update("resume", OperatorRequest(identity="ops"))
    await handles[0].result()
    return handles[0]


async def _canary_status(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """A rollout that keeps the Canary's status current (the ``canary-status`` patch), with a
    new revision mid-analysis, then a rollout whose Canary is not in the cluster."""
    cluster = FakeCluster()
    handles: list[WorkflowHandle[Any, Any]] = []

    async def new_revision() -> None:
        cluster.revision = "rev-3"
        await handles[0].execute_update("new_revision", NewRevisionRequest(revision="rev-3"))

    cluster.on(ActivityName.SET_WEIGHTS, lambda a: a.canary == 20, new_revision)
    handles.append(await rollouts.start(cluster))
    await handles[0].result()
    return handles[0]


async def _status_rolled_back(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    good, bad = passing("request-success-rate"), failing("request-success-rate")
    cluster = FakeCluster(metrics={"request-success-rate": [good, bad]}, canary_in_cluster=False)
    handle = await rollouts.start(cluster, make_canary(threshold=2))
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle


async def _first_initialization(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """A first initialization in two stages (the ``zero-downtime-init`` patch): prepare, the
    primary ready, routes, then the switch of the apex Service."""
    cluster = FakeCluster(first_initialization=True, promoted_revision=None)
    handle = await rollouts.start(cluster)
    await handle.result()
    return handle


async def _blue_green_mirrored(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """Blue/Green with mirroring (the ``strategies`` patch): mirror, iterations, switch."""
    cluster = FakeCluster()
    canary = make_canary(stepWeight=None, maxWeight=None, iterations=2, mirror=True)
    handle = await rollouts.start(cluster, canary)
    await handle.result()
    return handle


async def _ab_testing_rolled_back(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """A/B testing (the ``strategies`` patch) rolled back by the matched users' errors."""
    cluster = FakeCluster(metrics={"request-success-rate": [failing("request-success-rate")]})
    match = [{"headers": {"x-canary": {"exact": "insider"}}}]
    canary = make_canary(stepWeight=None, maxWeight=None, iterations=5, match=match, threshold=2)
    handle = await rollouts.start(cluster, canary)
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle


async def _canary_mirrored(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """A weighted canary whose first step mirrors (the ``strategies`` patch)."""
    cluster = FakeCluster()
    handle = await rollouts.start(cluster, make_canary(mirror=True, maxWeight=20))
    await handle.result()
    return handle


async def _session_affinity(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """A weighted canary with session affinity: its cookie from workflow.random(), in status."""
    cluster = FakeCluster()
    affinity = {"cookieName": "flagger-cookie"}
    handle = await rollouts.start(cluster, make_canary(sessionAffinity=affinity, maxWeight=20))
    await handle.result()
    return handle


async def _three_action_step(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """The one-activity step (the ``one-activity-step`` patch): a load test, a failing check."""
    good, bad = passing("request-success-rate"), failing("request-success-rate")
    cluster = FakeCluster(metrics={"request-success-rate": [good, bad, good]})
    canary = make_canary(webhooks=[hook("load", "rollout"), hook("notify", "post-rollout")])
    handle = await rollouts.start(cluster, canary, requested_by="ci")
    await handle.result()
    return handle


async def _local_advance(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """The step's ``advance`` as a local activity (the ``local-advance`` patch): a load test, a
    failing check, promoted."""
    return await _three_action_step(rollouts)


async def _local_advance_rolled_back(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """The local ``advance`` steps, then a rollback when a check fails past the threshold."""
    return await _rolled_back(rollouts, threshold=1)


async def _continued_as_new_promote_pending(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """Continue-as-new with a promote pending; the next run's gate is approved by it."""
    cluster = FakeCluster(webhooks={"approve": [False]})
    canary = make_canary(
        stepWeight=2, maxWeight=50, webhooks=[hook("approve", "confirm-promotion")]
    )
    handles: list[WorkflowHandle[Any, Any]] = []
    sent: list[bool] = []

    async def promote_when_history_is_long() -> None:
        info = (await handles[0].describe()).raw_description.workflow_execution_info
        if not sent and info.history_length > 90:
            sent.append(True)
            await handles[0].signal("promote", PromoteRequest(identity="ops"))

    cluster.on(ActivityName.CHECK_METRIC, lambda _: True, promote_when_history_is_long, once=False)
    handles.append(await rollouts.start(cluster, canary, max_history_events=100))
    await handles[0].result()
    return handles[0]


async def _continued_as_new_rolled_back(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """Continue-as-new mid-analysis, then a rollback with the undo stack carried across."""
    good, bad = passing("request-success-rate"), failing("request-success-rate")
    cluster = FakeCluster(metrics={"request-success-rate": [good] * 14 + [bad]})
    canary = make_canary(stepWeight=2, maxWeight=50, threshold=1)
    handle = await rollouts.start(cluster, canary, max_history_events=100)
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle


async def _flagger_events(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    """Flagger's current events (the ``flagger-events`` patch): every gate that passed, the
    rollback hook asked each step, a stepped promotion's primary weights."""
    cluster = FakeCluster()
    canary = make_canary(
        stepWeightPromotion=25,
        webhooks=[
            hook("gate", "confirm-rollout"),
            hook("smoke", "pre-rollout"),
            hook("traffic", "confirm-traffic-increase"),
            hook("stop", "rollback"),
            hook("notify", "post-rollout"),
        ],
    )
    handle = await rollouts.start(cluster, canary)
    await handle.result()
    return handle


SCENARIOS = {
    "succeeded": _succeeded,
    "rolled_back": _rolled_back,
    "operated": _operated,
    "canary_status": _canary_status,
    "canary_status_rolled_back": _status_rolled_back,
    "first_initialization": _first_initialization,
    "blue_green_mirrored": _blue_green_mirrored,
    "ab_testing_rolled_back": _ab_testing_rolled_back,
    "canary_mirrored": _canary_mirrored,
    "session_affinity": _session_affinity,
    "three_action_step": _three_action_step,
    "local_advance": _local_advance,
    "local_advance_rolled_back": _local_advance_rolled_back,
    "continued_as_new_promote_pending": _continued_as_new_promote_pending,
    "continued_as_new_rolled_back": _continued_as_new_rolled_back,
    "flagger_events": _flagger_events,
}
"""Stored histories; those recorded before a patch are kept (they are what running rollouts
replay), so re-record only the scenarios a change is about:
``python -m tests.replay.record NAME``."""


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEMPORAL_TEST_SERVER, data_converter=pydantic_data_converter
    )
    try:
        await register_search_attributes(env.client)
        async with Worker(
            env.client,
            task_queue=TASK_QUEUE,
            workflows=[CanaryRolloutWorkflow],
            activities=ACTIVITIES,
            workflow_runner=workflow_runner(),
        ):
            rollouts = Rollouts(env)
            HISTORIES.mkdir(exist_ok=True)
            wanted = sys.argv[1:] or list(SCENARIOS)
            for name, scenario in SCENARIOS.items():
                if name not in wanted:
                    continue
                handle = await scenario(rollouts)
                runs = await run_histories(rollouts.client, handle)
                for index, history in enumerate(runs, start=1):
                    # A rollout that continued as new: every run, each replayed on its own.
                    stem = name if len(runs) == 1 else f"{name}.run{index}"
                    (HISTORIES / f"{stem}.json").write_text(history.to_json())
                    print(f"{stem}: {len(history.events)} events", file=sys.stderr)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
