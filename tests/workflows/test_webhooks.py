"""Webhook semantics per type (Flagger's), and continue-as-new during a long gate."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from tests.workflows.conftest import (
    Rollouts,
    event_messages,
    expect_rollback,
    hook,
    make_canary,
    weights,
)
from tests.workflows.fakes import FakeCluster
from workflows.activity_api import ActivityName
from workflows.model import Phase


def hook_calls(cluster: FakeCluster, name: str) -> list[Phase]:
    return [c.phase for c in cluster.called(ActivityName.CALL_WEBHOOK) if c.webhook.name == name]


async def test_confirm_rollout_refusal_waits_without_failed_checks(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"gate": [False, False, False, True]})
    handle = await rollouts.start(cluster, make_canary(webhooks=[hook("gate", "confirm-rollout")]))
    assert (await handle.result()).phase == Phase.SUCCEEDED
    assert hook_calls(cluster, "gate")[:3] == [Phase.INITIALIZED, Phase.WAITING, Phase.WAITING]
    assert len(hook_calls(cluster, "gate")) == 4
    # the canary is scaled up only once the gate opens
    first_scale = next(
        i for i, (n, _) in enumerate(cluster.calls) if n == ActivityName.SCALE_CANARY
    )
    last_gate = max(i for i, (n, a) in enumerate(cluster.calls) if n == ActivityName.CALL_WEBHOOK)
    assert last_gate < first_scale
    status = await rollouts.status(handle)
    assert status.failed_checks == 0
    waiting = "Halt podinfo.test advancement waiting for approval gate"
    assert event_messages(status).count(waiting) == 1
    severities = {e.message: e.alert_severity for e in cluster.called(ActivityName.RECORD_EVENT)}
    assert severities[waiting] == "warn"


async def test_pre_rollout_failure_counts_and_is_retried(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"smoke": [False, True]})
    handle = await rollouts.start(cluster, make_canary(webhooks=[hook("smoke", "pre-rollout")]))
    assert (await handle.result()).phase == Phase.SUCCEEDED
    assert len(hook_calls(cluster, "smoke")) == 2
    status = await rollouts.status(handle)
    assert status.failed_checks == 1
    assert status.failed_check_history[0].source == "smoke"
    assert "Halt podinfo.test advancement pre-rollout check smoke failed" in event_messages(status)


async def test_pre_rollout_failures_reach_the_threshold(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"smoke": [False]})
    canary = make_canary(threshold=2, webhooks=[hook("smoke", "pre-rollout")])
    handle = await rollouts.start(cluster, canary)
    error = await expect_rollback(handle)
    assert error.message == "Rolling back podinfo.test failed checks threshold reached 2"
    assert weights(cluster) == [(100, 0)]  # traffic never shifted; the undo is idempotent


async def test_rollout_webhook_failure_is_a_failed_check(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"load": [True, False, True]})
    handle = await rollouts.start(cluster, make_canary(webhooks=[hook("load", "rollout")]))
    assert (await handle.result()).phase == Phase.SUCCEEDED
    status = await rollouts.status(handle)
    assert status.failed_checks == 1
    assert [c for _, c in weights(cluster)] == [10, 20, 30, 40, 50, 0]
    # a failing rollout hook stops the step before the metrics: one step without checks
    assert len(cluster.called(ActivityName.CHECK_METRIC)) == 2 * (
        len(hook_calls(cluster, "load")) - 1
    )


async def test_confirm_traffic_increase_refusal_holds_the_weight(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"more": [True, False, False, True]})
    canary = make_canary(webhooks=[hook("more", "confirm-traffic-increase")])
    handle = await rollouts.start(cluster, canary)
    assert (await handle.result()).phase == Phase.SUCCEEDED
    assert [c for _, c in weights(cluster)] == [10, 20, 30, 40, 50, 0]
    status = await rollouts.status(handle)
    assert status.failed_checks == 0
    assert status.iterations == 8  # two held steps
    assert "Halt podinfo.test advancement waiting for traffic increase approval more" in (
        event_messages(status)
    )


async def test_confirm_promotion_refusal_waits_while_analysis_goes_on(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"approve": [False, False, True]})
    canary = make_canary(webhooks=[hook("approve", "confirm-promotion")])
    handle = await rollouts.start(cluster, canary)
    assert (await handle.result()).phase == Phase.SUCCEEDED
    assert hook_calls(cluster, "approve") == [
        Phase.PROGRESSING,
        Phase.WAITING_PROMOTION,
        Phase.WAITING_PROMOTION,
    ]
    # analysis at the maximum weight ran on every interval while waiting (weight 0 is not judged)
    assert len(cluster.called(ActivityName.CHECK_METRIC)) == 2 * (4 + 3)
    assert weights(cluster)[-2:] == [(50, 50), (100, 0)]


async def test_a_long_gate_continues_as_new(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"gate": [False] * 30 + [True]})
    canary = make_canary(webhooks=[hook("gate", "confirm-rollout")])
    handle = await rollouts.start(cluster, canary, max_history_events=100, requested_by="ci")
    first_run = handle.result_run_id
    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert [c for _, c in weights(cluster)] == [10, 20, 30, 40, 50, 0]
    history = await rollouts.client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    last = rollouts.client.get_workflow_handle(handle.id)
    assert (await last.describe()).run_id != first_run
    status = await rollouts.status(last)
    assert [(a.action, a.identity) for a in status.actions] == [("start", "ci")]  # carried over
    assert len(hook_calls(cluster, "gate")) == 31
    assert len(cluster.called(ActivityName.INITIALIZE)) == 1  # not initialized again


async def test_every_check_that_passed_is_an_event_worded_as_flaggers(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    canary = make_canary(
        stepWeightPromotion=25,
        webhooks=[
            hook("gate", "confirm-rollout"),
            hook("smoke", "pre-rollout"),
            hook("traffic", "confirm-traffic-increase"),
            hook("approve", "confirm-promotion"),
            hook("stop", "rollback"),
            hook("notify", "post-rollout"),
        ],
    )
    handle = await rollouts.start(cluster, canary)
    assert (await handle.result()).phase == Phase.SUCCEEDED
    messages = event_messages(await rollouts.status(handle))
    for once in (
        "Confirm-rollout check gate passed",
        "Pre-rollout check smoke passed",
        "Confirm-promotion check approve passed",
        "Post-rollout check notify passed",
        "Advance podinfo.test primary weight 75",
        "Advance podinfo.test primary weight 100",
    ):
        assert messages.count(once) == 1, (once, messages)
    # Asked at every step, as Flagger asks: one event each time.
    assert messages.count("Confirm-traffic-increase check traffic passed") == 5
    assert messages.count("Rollback hook stop not signaling a rollback") >= 5
    assert "Routing all traffic to primary" not in messages  # promoted step by step
    assert messages.index("Confirm-rollout check gate passed") < messages.index(
        "New revision detected! Scaling up podinfo.test"
    )


async def test_a_rollback_hook_that_answers_is_a_warning_event(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"stop": [False, True]})
    handle = await rollouts.start(cluster, make_canary(webhooks=[hook("stop", "rollback")]))
    await expect_rollback(handle)
    status = await rollouts.status(handle)
    (passed,) = [e for e in status.events if e.message == "Rollback check stop passed"]
    assert passed.type == "Warning"
    assert event_messages(status).index("Rollback check stop passed") < event_messages(
        status
    ).index("Rolling back podinfo.test manual webhook invoked")
