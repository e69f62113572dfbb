"""The three-action step, and a state that survives continue-as-new whole.

A step with checks is the interval timer, ``analyse_step`` (every check) and ``advance`` (the
weight, its event and the Canary's status, a local activity run in the workflow task that has the
checks' answers): three Temporal actions and two workflow tasks. Continue-as-new carries the
status, the operator's pending requests and the undo stack in one ``ResumeState``, so a promote
accepted just before it is honoured after it, and a rollback after it undoes what the first run
did.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.workflows.conftest import (
    TASK_QUEUE,
    Rollouts,
    expect_rollback,
    hook,
    make_canary,
    run_histories,
    weights,
)
from tests.workflows.fakes import ACTIVITIES, FakeCluster, failing, passing
from worker.report._payloads import local_activity
from worker.runner import workflow_runner
from workflows.activity_api import ActivityName
from workflows.model import AbortRequest, Phase, PromoteRequest, RolloutInput
from workflows.rollout import CanaryRolloutWorkflow

ACTIONS = (
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_MARKER_RECORDED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
)


def _activity(event: HistoryEvent) -> str | None:
    """The activity an event schedules, or the local activity whose marker it is."""
    if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        local = local_activity(event.marker_recorded_event_attributes)
        return local[0] if local else None
    if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        return None
    return str(event.activity_task_scheduled_event_attributes.activity_type.name)


async def _runs(rollouts: Rollouts, handle: WorkflowHandle[Any, Any]) -> list[list[HistoryEvent]]:
    """The events of every run of a rollout, first run first (following continue-as-new)."""
    return [list(h.events) for h in await run_histories(rollouts.client, handle)]


def _continued_input(events: list[HistoryEvent], rollouts: Rollouts) -> RolloutInput:
    attributes = events[-1].workflow_execution_continued_as_new_event_attributes
    converter = rollouts.client.data_converter.payload_converter
    (payload,) = attributes.input.payloads
    value = converter.from_payload(payload, RolloutInput)
    assert isinstance(value, RolloutInput)
    return value


async def test_a_step_with_two_metrics_costs_three_actions(rollouts: Rollouts) -> None:
    handle = await rollouts.start(FakeCluster())
    assert (await handle.result()).phase == Phase.SUCCEEDED
    events = list((await handle.fetch_history()).events)
    timers = [i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    windows = [events[a:b] for a, b in itertools.pairwise(timers)]
    steps = [w for w in windows if ActivityName.ANALYSE_STEP in map(_activity, w)]
    assert len(steps) == 4  # weights 20, 30, 40, 50 follow a judged step (10 does not)
    for window in steps:
        kinds = [e.event_type for e in window if e.event_type in ACTIONS]
        assert len(kinds) == 3, [EventType.Name(k) for k in kinds]
        assert [_activity(e) for e in window if _activity(e)] == [
            ActivityName.ANALYSE_STEP,
            ActivityName.ADVANCE,
        ]
        # The timer's task schedules the checks; their answer's task runs advance and starts
        # the next timer: no activity task and no workflow task of advance's own.
        tasks = [e for e in window if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED]
        assert len(tasks) == 2
        scheduled = [
            e for e in window if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert [_activity(e) for e in scheduled] == [ActivityName.ANALYSE_STEP]


async def test_the_step_event_and_status_travel_with_the_weight(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    handle = await rollouts.start(cluster)
    await handle.result()
    (advance,) = [a for a in cluster.called(ActivityName.ADVANCE) if a.weights.canary == 30]
    assert advance.event.message == "Advance podinfo.test canary weight 30"
    assert advance.status.canary_weight == 30
    assert advance.status.phase == Phase.PROGRESSING
    # No separate write for it: every status write of weight 30 is the one carried.
    separate = [s for s in cluster.called(ActivityName.SYNC_CANARY_STATUS) if s.canary_weight == 30]
    assert separate == [advance.status]


async def test_a_failed_webhook_skips_the_metrics_of_its_step(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"load": [True, False, True]})
    handle = await rollouts.start(cluster, make_canary(webhooks=[hook("load", "rollout")]))
    assert (await handle.result()).phase == Phase.SUCCEEDED
    steps = cluster.called(ActivityName.ANALYSE_STEP)
    checks = cluster.called(ActivityName.CHECK_METRIC)
    # 5 judged steps (one failed at its webhook, so without metrics), 2 metrics each.
    assert len(steps) == 6
    assert len(checks) == 2 * 5
    status = await rollouts.status(handle)
    assert [c.message for c in status.failed_check_history] == ["rollout check load failed"]


async def test_an_abort_does_not_wait_for_a_slow_check(rollouts: Rollouts) -> None:
    """The rollback is scheduled while the step's activity is still running (TRY_CANCEL)."""
    cluster = FakeCluster()
    handles: list[WorkflowHandle[Any, Any]] = []

    async def abort() -> None:
        await handles[0].execute_update("abort", AbortRequest(identity="ops", reason="slow"))

    cluster.on(
        ActivityName.CHECK_METRIC,
        lambda a: a.metric.name == "request-duration" and cluster.weights[1] == 20,
        abort,
        block=True,
    )
    handles.append(await rollouts.start(cluster))
    error = await expect_rollback(handles[0])
    assert "aborted by ops: slow" in error.message
    events = list((await handles[0].fetch_history()).events)
    cancel = next(
        e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
    )
    undo = next(
        e
        for e in events
        if _activity(e) == ActivityName.SET_WEIGHTS and e.event_id > cancel.event_id
    )
    # Scheduled in the very workflow task that asked for the cancellation: nothing waited.
    tasks_between = [
        e
        for e in events
        if cancel.event_id < e.event_id < undo.event_id
        and e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    assert tasks_between == []
    assert weights(cluster)[-1] == (100, 0)


async def test_an_abort_sent_while_advance_runs_is_taken_when_it_returns(
    dev_server_env: WorkflowEnvironment,
) -> None:
    """``advance`` runs as a local activity, inside an open workflow task: an abort sent
    meanwhile waits for it (on the real server, which keeps the update until that task ends),
    is then accepted, and rolls back from the weight it set."""
    cluster = FakeCluster()
    rollouts = Rollouts(dev_server_env)
    handles: list[WorkflowHandle[Any, Any]] = []
    answered: list[float] = []
    returned: list[float] = []
    sent: list[asyncio.Task[None]] = []

    async def abort() -> None:
        await handles[0].execute_update("abort", AbortRequest(identity="ops", reason="mid-step"))
        answered.append(time.monotonic())

    async def slow_weight_change() -> None:
        sent.append(asyncio.create_task(abort()))  # another client, while the weights are set
        await asyncio.sleep(1.0)  # a slow API server
        assert not sent[0].done()  # not accepted while advance is in flight
        returned.append(time.monotonic())

    cluster.on(ActivityName.SET_WEIGHTS, lambda a: a.canary == 20, slow_weight_change, inline=True)
    async with Worker(
        dev_server_env.client,
        task_queue=TASK_QUEUE,
        workflows=[CanaryRolloutWorkflow],
        activities=ACTIVITIES,
        workflow_runner=workflow_runner(),
    ):
        handles.append(await rollouts.start(cluster, make_canary(interval="1s")))
        error = await expect_rollback(handles[0])
    assert "aborted by ops: mid-step" in error.message
    await sent[0]
    assert len(answered) == len(returned) == 1
    assert answered[0] > returned[0]
    assert weights(cluster) == [(90, 10), (80, 20), (100, 0)]
    assert cluster.canary_replicas == 0


async def test_a_promote_pending_at_continue_as_new_is_honoured_after(rollouts: Rollouts) -> None:
    """A promote accepted mid-step, then continue-as-new before promotion: the next run's
    confirm-promotion gate is approved by it (the gate itself never opens)."""
    cluster = FakeCluster(webhooks={"approve": [False]})
    canary = make_canary(
        stepWeight=2, maxWeight=50, webhooks=[hook("approve", "confirm-promotion")]
    )
    handles: list[WorkflowHandle[Any, Any]] = []
    sent: list[bool] = []

    async def promote_when_history_is_long() -> None:
        if sent:
            return
        length = (await handles[0].describe()).raw_description.workflow_execution_info
        if length.history_length > 90:
            sent.append(True)
            await handles[0].signal("promote", PromoteRequest(identity="ops", reason="ship"))

    cluster.on(ActivityName.CHECK_METRIC, lambda _: True, promote_when_history_is_long, once=False)
    handles.append(await rollouts.start(cluster, canary, max_history_events=100))
    result = await handles[0].result()
    assert result.phase == Phase.SUCCEEDED
    runs = await _runs(rollouts, handles[0])
    assert len(runs) >= 2
    carried = [_continued_input(run, rollouts) for run in runs[:-1]]
    pending = [c for c in carried if c.resume is not None and c.resume.requests.promote]
    assert pending, "no run continued as new with the promote pending"
    resume = pending[0].resume
    assert resume is not None
    assert resume.undo == ["canary", "traffic"]
    assert resume.status.canary_weight == 50  # the promote jumped to the maximum weight first
    assert cluster.primary_revision == "rev-2"
    status = await rollouts.status(handles[0])
    assert [a.action for a in status.actions] == ["start", "promote"]


async def test_a_rollback_after_continue_as_new_undoes_the_first_runs_work(
    rollouts: Rollouts,
) -> None:
    good, bad = passing("request-success-rate"), failing("request-success-rate")
    cluster = FakeCluster(metrics={"request-success-rate": [good] * 14 + [bad]})
    canary = make_canary(stepWeight=2, maxWeight=50, threshold=1)
    handle = await rollouts.start(cluster, canary, max_history_events=100)
    error = await expect_rollback(handle)
    assert error.message.startswith("Rolling back podinfo.test failed checks threshold reached")
    runs = await _runs(rollouts, handle)
    assert len(runs) >= 2, "the rollout did not continue as new before failing"
    assert _continued_input(runs[0], rollouts).resume is not None
    # The last run scaled nothing up itself: its undo stack came from the first run.
    last_run = [_activity(e) for e in runs[-1] if _activity(e)]
    assert ActivityName.SCALE_CANARY in last_run
    assert last_run.count(ActivityName.SCALE_CANARY) == 1  # the undo only
    assert cluster.mutations()[-2:] == [
        (ActivityName.SET_WEIGHTS, (100, 0)),
        (ActivityName.SCALE_CANARY, 0),
    ]
