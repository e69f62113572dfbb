"""Operator control: abort at every phase, promote, pause/resume, new revision, refusals."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy

from tests.workflows.conftest import (
    TASK_QUEUE,
    Rollouts,
    event_messages,
    expect_rollback,
    hook,
    make_canary,
    weights,
)
from tests.workflows.fakes import FakeCluster
from workflows.activity_api import ActivityName
from workflows.model import (
    AbortRequest,
    NewRevisionRequest,
    OperatorRequest,
    Phase,
    PromoteRequest,
    RolloutInput,
    RolloutStatus,
)
from workflows.rollout import CanaryRolloutWorkflow

ABORT = AbortRequest(identity="alice", reason="bad build")
ABORT_MESSAGE = "Rolling back podinfo.test aborted by alice: bad build"


class Late:
    """The workflow handle, known once the rollout started (hooks are set up before)."""

    handle: WorkflowHandle[Any, Any]

    async def update(self, name: str, request: Any) -> RolloutStatus:
        return await self.handle.execute_update(name, request, result_type=RolloutStatus)


def nth(n: int, when: Any = lambda _: True) -> Any:
    """A hook condition that holds on the n-th matching call only."""
    seen = [0]

    def check(arg: Any) -> bool:
        if when(arg):
            seen[0] += 1
        return seen[0] == n and when(arg)

    return check


def is_type(kind: str) -> Any:
    return lambda arg: arg.webhook.type == kind


# --- abort ---------------------------------------------------------------------------------


async def _abort_during(
    rollouts: Rollouts, cluster: FakeCluster, activity: str, when: Any, canary: Any = None
) -> RolloutStatus:
    late = Late()
    cluster.on(activity, when, lambda: late.update("abort", ABORT), block=True)
    late.handle = await rollouts.start(cluster, canary)
    error = await expect_rollback(late.handle)
    assert error.message == ABORT_MESSAGE
    status = await rollouts.status(late.handle)
    assert status.phase == Phase.FAILED
    assert [(a.action, a.identity, a.reason) for a in status.actions][-1] == (
        "abort",
        "alice",
        "bad build",
    )
    assert cluster.called(ActivityName.PROMOTE) == []
    assert event_messages(status)[-2:] == [
        ABORT_MESSAGE,
        "Canary failed! Scaling down podinfo.test",
    ]
    return status


async def test_abort_while_initializing(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    await _abort_during(rollouts, cluster, ActivityName.INITIALIZE, lambda _: True)
    assert cluster.mutations() == []  # nothing was changed, so nothing to undo


async def test_abort_while_waiting_for_confirm_rollout(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"gate": [False]})
    canary = make_canary(webhooks=[hook("gate", "confirm-rollout")])
    await _abort_during(rollouts, cluster, ActivityName.CALL_WEBHOOK, nth(2), canary)
    assert cluster.mutations() == []
    assert len(cluster.called(ActivityName.CALL_WEBHOOK)) == 2  # the cancelled call was the last


async def test_abort_during_metric_checks_counts_no_failed_check(rollouts: Rollouts) -> None:
    cluster = FakeCluster()

    async def nothing() -> None:
        pass

    def second(metric: str) -> Any:
        return nth(2, lambda a: a.metric.name == metric)

    # Both checks of the step stay in flight (the test server cannot cancel one that just ended).
    cluster.on(ActivityName.CHECK_METRIC, second("request-duration"), nothing, block=True)
    status = await _abort_during(
        rollouts, cluster, ActivityName.CHECK_METRIC, second("request-success-rate")
    )
    assert status.failed_checks == 0
    assert status.failed_check_history == []
    assert weights(cluster) == [(90, 10), (80, 20), (100, 0)]


async def test_abort_while_progressing(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    await _abort_during(rollouts, cluster, ActivityName.SET_WEIGHTS, lambda a: a.canary == 20)
    assert weights(cluster) == [(90, 10), (80, 20), (100, 0)]
    assert cluster.mutations()[-1] == (ActivityName.SCALE_CANARY, 0)


async def test_abort_while_waiting_for_promotion(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"approve": [False]})
    canary = make_canary(webhooks=[hook("approve", "confirm-promotion")])
    status = await _abort_during(
        rollouts, cluster, ActivityName.CALL_WEBHOOK, nth(3, is_type("confirm-promotion")), canary
    )
    assert "Halt podinfo.test advancement waiting for promotion approval approve" in (
        event_messages(status)
    )
    assert weights(cluster)[-2:] == [(50, 50), (100, 0)]
    assert cluster.mutations()[-1] == (ActivityName.SCALE_CANARY, 0)


async def test_abort_while_paused(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    pause = OperatorRequest()
    cluster.on(
        ActivityName.SET_WEIGHTS, lambda a: a.canary == 20, lambda: late.update("pause", pause)
    )
    late.handle = await rollouts.start(cluster)
    await rollouts.advance_until(late.handle, lambda s: s.paused and s.canary_weight == 20)
    await late.update("abort", ABORT)
    assert (await expect_rollback(late.handle)).message == ABORT_MESSAGE
    assert weights(cluster) == [(90, 10), (80, 20), (100, 0)]


async def test_abort_and_promote_refused_once_promotion_is_under_way(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    refusals: list[str] = []

    async def try_to_interfere() -> None:
        for name, request in (
            ("abort", ABORT),
            ("promote", PromoteRequest()),
            ("pause", OperatorRequest()),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as caught:
                await late.update(name, request)
            refusals.append(str(caught.value.cause))

    cluster.on(ActivityName.PROMOTE, lambda _: True, try_to_interfere)
    late.handle = await rollouts.start(cluster)
    assert (await late.handle.result()).phase == Phase.SUCCEEDED
    assert len(refusals) == 3
    assert all("promotion is under way (Promoting)" in r for r in refusals)


# --- promote -------------------------------------------------------------------------------


async def test_promote_skips_the_remaining_steps(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    request = PromoteRequest(identity="bob", reason="looks good")
    cluster.on(
        ActivityName.SET_WEIGHTS, lambda a: a.canary == 10, lambda: late.update("promote", request)
    )
    late.handle = await rollouts.start(cluster)
    assert (await late.handle.result()).phase == Phase.SUCCEEDED
    # straight to the maximum weight, analysed once more there, then promoted; the step at
    # weight 0 judges nothing (no traffic yet), so two steps were analysed
    assert weights(cluster) == [(90, 10), (50, 50), (100, 0)]
    assert len(cluster.called(ActivityName.CHECK_METRIC)) == 2 * 2
    # the promote ends the current wait only: the maximum weight gets a full interval of traffic
    history = await late.handle.fetch_history()
    fired = [e for e in history.events if e.HasField("timer_fired_event_attributes")]
    assert len(fired) == 2  # the interval at weight 0, then the one at the maximum weight
    status = await rollouts.status(late.handle)
    assert [(a.action, a.identity, a.reason) for a in status.actions][-1] == (
        "promote",
        "bob",
        "looks good",
    )


async def test_promote_full_promotes_at_once(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    cluster.on(
        ActivityName.SET_WEIGHTS,
        lambda a: a.canary == 10,
        lambda: late.update("promote", PromoteRequest(full=True)),
    )
    late.handle = await rollouts.start(cluster)
    assert (await late.handle.result()).phase == Phase.SUCCEEDED
    assert weights(cluster) == [(90, 10), (100, 0)]
    # weight 0 is not judged (no traffic) and the promote came right after the first step
    assert cluster.called(ActivityName.CHECK_METRIC) == []
    assert (await rollouts.status(late.handle)).actions[-1].action == "promote-full"


async def test_promote_signal_has_the_same_effect(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    cluster.on(
        ActivityName.SET_WEIGHTS,
        lambda a: a.canary == 10,
        lambda: late.handle.signal("promote", PromoteRequest(full=True, identity="web-ui")),
    )
    late.handle = await rollouts.start(cluster)
    await late.handle.result()
    assert weights(cluster) == [(90, 10), (100, 0)]
    assert (await rollouts.status(late.handle)).actions[-1].identity == "web-ui"


async def test_promote_approves_the_confirm_rollout_gate(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"gate": [False]})
    late = Late()
    cluster.on(ActivityName.CALL_WEBHOOK, nth(2), lambda: late.update("promote", PromoteRequest()))
    late.handle = await rollouts.start(
        cluster, make_canary(webhooks=[hook("gate", "confirm-rollout")])
    )
    assert (await late.handle.result()).phase == Phase.SUCCEEDED
    assert len(cluster.called(ActivityName.CALL_WEBHOOK)) == 2
    assert weights(cluster) == [(50, 50), (100, 0)]


# --- pause / resume ----------------------------------------------------------------------


async def test_pause_holds_the_weight_until_resumed(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    cluster.on(
        ActivityName.SET_WEIGHTS,
        lambda a: a.canary == 20,
        lambda: late.update("pause", OperatorRequest(identity="carol", reason="incident")),
    )
    late.handle = await rollouts.start(cluster)
    await rollouts.advance_until(late.handle, lambda s: s.paused and s.canary_weight == 20)
    calls = len(cluster.calls)
    await rollouts.env.sleep(600)  # twenty intervals
    assert len(cluster.calls) == calls  # nothing happens while paused
    # resume through the signal of the same name, as the Web UI's signal button sends it
    await late.handle.signal("resume", OperatorRequest(identity="carol"))
    assert (await late.handle.result()).phase == Phase.SUCCEEDED
    assert [c for _, c in weights(cluster)] == [10, 20, 30, 40, 50, 0]
    status = await rollouts.status(late.handle)
    assert [a.action for a in status.actions] == ["start", "pause", "resume"]
    assert not status.paused


async def test_validators_refuse_what_makes_no_sense(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    refusals: list[str] = []

    async def try_things() -> None:
        for name, request in (
            ("resume", OperatorRequest()),  # not paused
            ("new_revision", {"revision": ""}),  # no revision: refused by the payload's model
            ("abort", {"identity": "x"}),  # no reason
        ):
            with pytest.raises(WorkflowUpdateFailedError) as caught:
                await late.update(name, request)
            refusals.append(str(caught.value.cause))
        await late.update("pause", OperatorRequest())
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await late.update("pause", OperatorRequest())
        refusals.append(str(caught.value.cause))
        await late.update("resume", OperatorRequest())

    # During the first judged step's checks (an activity task: updates are handled meanwhile).
    cluster.on(ActivityName.ANALYSE_STEP, lambda _: True, try_things)
    late.handle = await rollouts.start(cluster)
    assert (await late.handle.result()).phase == Phase.SUCCEEDED
    assert "not paused" in refusals[0]
    assert "already paused" in refusals[3]
    assert len(refusals) == 4


# --- new revision --------------------------------------------------------------------------


async def test_new_revision_restarts_the_analysis(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    request = NewRevisionRequest(revision="rev-3", identity="ci")

    async def ci_sets_the_image_then_tells() -> None:
        cluster.revision = "rev-3"
        await late.update("new_revision", request)

    cluster.on(ActivityName.SET_WEIGHTS, lambda a: a.canary == 30, ci_sets_the_image_then_tells)
    late.handle = await rollouts.start(cluster)
    result = await late.handle.result()
    assert result.revision == "rev-3"
    assert cluster.primary_revision == "rev-3"
    assert [c for _, c in weights(cluster)] == [10, 20, 30, 0, 10, 20, 30, 40, 50, 0]
    status = await rollouts.status(late.handle)
    assert "New revision detected! Restarting analysis for podinfo.test" in event_messages(status)
    assert status.iterations == 6  # counted again from the restart
    canary_waits = [w for w in cluster.called(ActivityName.WAIT_READY) if w.deployment == "podinfo"]
    assert len(canary_waits) == 2
    assert [a.action for a in status.actions] == ["start", "new-revision"]


async def test_the_same_revision_is_a_no_op(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    late = Late()
    same = NewRevisionRequest(revision="rev-2")
    cluster.on(
        ActivityName.SET_WEIGHTS,
        lambda a: a.canary == 10,
        lambda: late.update("new_revision", same),
    )
    late.handle = await rollouts.start(cluster)
    await late.handle.result()
    assert [c for _, c in weights(cluster)] == [10, 20, 30, 40, 50, 0]
    assert [a.action for a in (await rollouts.status(late.handle)).actions] == ["start"]


async def test_handlers_have_descriptions() -> None:
    from temporalio.workflow import _Definition

    defn = _Definition.must_from_class(CanaryRolloutWorkflow)
    assert set(defn.updates) == {"promote", "abort", "pause", "resume", "new_revision"}
    assert set(defn.signals) == {"promote", "abort", "pause", "resume", "new_revision"}
    handlers = [*defn.updates.values(), *defn.signals.values(), *defn.queries.values()]
    assert all(h.description for h in handlers)


def _with_start(
    rollouts: Rollouts, workflow_id: str, **fields: Any
) -> WithStartWorkflowOperation[Any, Any]:
    fields.setdefault("revision", "rev-2")
    return WithStartWorkflowOperation(
        CanaryRolloutWorkflow.run,
        RolloutInput(canary=make_canary(), **fields),
        id=workflow_id,
        task_queue=TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def test_update_with_start_hands_a_new_revision_to_the_running_rollout(
    rollouts: Rollouts,
) -> None:
    cluster = FakeCluster()
    late = Late()

    async def ci_pushes_rev_3() -> None:
        cluster.revision = "rev-3"  # the CI job sets the image, then hands the revision over
        start = _with_start(rollouts, late.handle.id, revision="rev-3")
        await rollouts.client.execute_update_with_start_workflow(
            CanaryRolloutWorkflow.new_revision,
            NewRevisionRequest(revision="rev-3", identity="ci"),
            start_workflow_operation=start,
        )
        assert (await start.workflow_handle()).result_run_id == late.handle.result_run_id

    cluster.on(ActivityName.SET_WEIGHTS, lambda a: a.canary == 20, ci_pushes_rev_3)
    late.handle = await rollouts.start(cluster)
    assert (await late.handle.result()).revision == "rev-3"
    assert [c for _, c in weights(cluster)] == [10, 20, 0, 10, 20, 30, 40, 50, 0]


async def test_a_revision_handed_over_at_start_is_the_one_rolled_out(rollouts: Rollouts) -> None:
    # What update-with-start does when no rollout runs: the update reaches the new workflow
    # before it has read the target's revision, and its revision wins.
    cluster = FakeCluster(revision="rev-4")
    late = Late()
    request = NewRevisionRequest(revision="rev-4")
    cluster.on(
        ActivityName.READ_REVISION, lambda _: True, lambda: late.update("new_revision", request)
    )
    late.handle = await rollouts.start(cluster, revision=None)
    result = await late.handle.result()
    assert result.revision == "rev-4"
    assert cluster.primary_revision == "rev-4"
    assert [c for _, c in weights(cluster)] == [10, 20, 30, 40, 50, 0]
    assert [a.action for a in (await rollouts.status(late.handle)).actions] == ["start"]


async def test_a_handed_over_revision_the_target_has_left_is_not_promoted(
    rollouts: Rollouts,
) -> None:
    # The revision a CI job computed, then the target changed again before the rollout read it:
    # the promotion finds the target elsewhere, and what the target runs now is analysed.
    cluster = FakeCluster(revision="rev-9")
    late = Late()
    request = NewRevisionRequest(revision="rev-4")
    cluster.on(
        ActivityName.READ_REVISION, lambda _: True, lambda: late.update("new_revision", request)
    )
    late.handle = await rollouts.start(cluster, revision=None)
    result = await late.handle.result()
    assert result.revision == "rev-9"
    assert [p.revision for p in cluster.called(ActivityName.PROMOTE)] == ["rev-4", "rev-9"]
    assert cluster.primary_revision == "rev-9"


async def test_a_stale_revision_arriving_late_never_wins_over_the_target(
    rollouts: Rollouts,
) -> None:
    # Two CI jobs: A computed rev-3 before B set the image that made the target rev-4; B's
    # rollout runs rev-4 and A's announcement arrives afterwards. The target is the truth.
    cluster = FakeCluster(revision="rev-4")
    late = Late()
    stale = NewRevisionRequest(revision="rev-3", identity="ci-job-a")
    cluster.on(
        ActivityName.SET_WEIGHTS,
        lambda a: a.canary == 20,
        lambda: late.update("new_revision", stale),
    )
    late.handle = await rollouts.start(cluster, revision="rev-4")
    result = await late.handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert result.revision == "rev-4"
    assert cluster.primary_revision == "rev-4"


async def test_a_target_changed_under_promotion_is_analysed_before_it_is_promoted(
    rollouts: Rollouts,
) -> None:
    # Someone changed the Deployment by hand during the analysis and nobody told the rollout:
    # the promotion notices, and the new spec gets its own analysis (Flagger's restart rule).
    cluster = FakeCluster()

    async def changed_by_hand() -> None:
        cluster.revision = "rev-5"

    cluster.on(ActivityName.SET_WEIGHTS, lambda a: a.canary == 40, changed_by_hand)
    handle = await rollouts.start(cluster)
    result = await handle.result()
    assert result.revision == "rev-5"
    assert cluster.primary_revision == "rev-5"
    promotes = [p.revision for p in cluster.called(ActivityName.PROMOTE)]
    assert promotes == ["rev-2", "rev-5"]
    assert [c for _, c in weights(cluster)] == [10, 20, 30, 40, 50, 0, 10, 20, 30, 40, 50, 0]
