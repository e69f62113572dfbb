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
)
from tests.workflows.fakes import ACTIVITIES, FakeCluster, failing, passing
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


async def _rolled_back(rollouts: Rollouts) -> WorkflowHandle[Any, Any]:
    good, bad = passing("request-success-rate"), failing("request-success-rate")
    cluster = FakeCluster(metrics={"request-success-rate": [good, good, bad]})
    handle = await rollouts.start(cluster, make_canary(threshold=3))
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
        ):
            rollouts = Rollouts(env)
            HISTORIES.mkdir(exist_ok=True)
            wanted = sys.argv[1:] or list(SCENARIOS)
            for name, scenario in SCENARIOS.items():
                if name not in wanted:
                    continue
                handle = await scenario(rollouts)
                history = await handle.fetch_history()
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"{name}: {len(history.events)} events", file=sys.stderr)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
