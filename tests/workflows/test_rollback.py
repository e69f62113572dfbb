"""Rollbacks: failed-check threshold, progress deadline, rollback webhook, cancellation, errors."""

from __future__ import annotations

from tests.workflows.conftest import (
    Rollouts,
    event_messages,
    expect_rollback,
    hook,
    make_canary,
    weights,
)
from tests.workflows.fakes import FakeCluster, failing, passing
from workflows.activity_api import ActivityName
from workflows.model import Phase
from workflows.search import CANARY_PHASE, CANARY_WEIGHT


def compensated(cluster: FakeCluster) -> bool:
    """Traffic back to the primary first, then the canary scaled to zero; primary untouched."""
    return (
        cluster.mutations()[-2:]
        == [(ActivityName.SET_WEIGHTS, (100, 0)), (ActivityName.SCALE_CANARY, 0)]
        and cluster.called(ActivityName.PROMOTE) == []
        and cluster.weights == (100, 0)
        and cluster.canary_replicas == 0
    )


async def test_rollback_at_the_failed_check_threshold(rollouts: Rollouts) -> None:
    bad = failing("request-success-rate")
    good = passing("request-success-rate")
    cluster = FakeCluster(
        metrics={"request-success-rate": [good, good, good, bad]},
        webhooks={"notify": [True]},
    )
    canary = make_canary(threshold=3, webhooks=[hook("notify", "post-rollout")])
    handle = await rollouts.start(cluster, canary)
    error = await expect_rollback(handle)

    assert error.message == "Rolling back podinfo.test failed checks threshold reached 3"
    # weight 0 is not judged (no traffic yet); three good steps, then three bad ones at 40
    assert weights(cluster) == [(90, 10), (80, 20), (70, 30), (60, 40), (100, 0)]
    assert compensated(cluster)
    status = await rollouts.status(handle)
    assert status.phase == Phase.FAILED
    assert (status.canary_weight, status.failed_checks, status.iterations) == (0, 3, 7)
    assert [c.source for c in status.failed_check_history] == ["request-success-rate"] * 3
    assert [c.weight for c in status.failed_check_history] == [40, 40, 40]
    assert status.metrics["request-success-rate"].outcome == "breach"
    messages = event_messages(status)
    assert messages[-6:] == [
        "Halt podinfo.test advancement success rate 69.17% < 99%",
        "Halt podinfo.test advancement success rate 69.17% < 99%",
        "Halt podinfo.test advancement success rate 69.17% < 99%",
        "Rolling back podinfo.test failed checks threshold reached 3",
        "Canary failed! Scaling down podinfo.test",
        "Post-rollout check notify passed",
    ]
    severities = {e.message: e.alert_severity for e in cluster.called(ActivityName.RECORD_EVENT)}
    assert severities["Canary failed! Scaling down podinfo.test"] == "error"
    (post,) = [c for c in cluster.called(ActivityName.CALL_WEBHOOK) if c.webhook.name == "notify"]
    assert post.phase == Phase.FAILED
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(CANARY_PHASE) == "Failed"
    assert attributes.get(CANARY_WEIGHT) == 0


async def test_all_failing_metrics_of_a_step_count_once(rollouts: Rollouts) -> None:
    cluster = FakeCluster(
        metrics={
            "request-success-rate": [failing("request-success-rate")],
            "request-duration": [failing("request-duration", "request duration 1.515s > 500ms")],
        }
    )
    handle = await rollouts.start(cluster, make_canary(threshold=2))
    await expect_rollback(handle)
    status = await rollouts.status(handle)
    assert status.failed_checks == 2  # Flagger counts one failed check per step
    assert len(status.failed_check_history) == 4  # but every failing metric is recorded
    halts = [e.message for e in status.events if e.reason == "Halt"]
    assert (
        halts
        == [  # and posted, as Flagger posts each
            "Halt podinfo.test advancement success rate 69.17% < 99%",
            "Halt podinfo.test advancement request duration 1.515s > 500ms",
        ]
        * 2
    )
    assert weights(cluster) == [(90, 10), (100, 0)]  # weight 0 is not judged


async def test_provider_error_is_a_failed_check_not_a_crash(rollouts: Rollouts) -> None:
    cluster = FakeCluster(metrics={"request-success-rate": [passing("request-success-rate")]})
    cluster.metrics["request-duration"] = []
    handle_canary = make_canary(
        threshold=1,
        metrics=[{"name": "request-duration", "thresholdRange": {"max": 500}}],
    )

    async def broken() -> None:
        raise RuntimeError("prometheus unreachable")

    cluster.on(ActivityName.CHECK_METRIC, lambda _: True, broken, once=False)
    handle = await rollouts.start(cluster, handle_canary)
    await expect_rollback(handle)
    status = await rollouts.status(handle)
    assert status.failed_check_history[0].outcome == "provider error"
    assert "prometheus unreachable" in status.failed_check_history[0].message


async def test_progress_deadline_rolls_back(rollouts: Rollouts) -> None:
    cluster = FakeCluster(ready={"podinfo": [False]})
    handle = await rollouts.start(cluster)
    error = await expect_rollback(handle)
    assert error.message.startswith(
        "Rolling back podinfo.test progress deadline exceeded canary deployment podinfo.test"
    )
    assert cluster.mutations() == [
        (ActivityName.SCALE_CANARY, None),
        (ActivityName.SET_WEIGHTS, (100, 0)),
        (ActivityName.SCALE_CANARY, 0),
    ]
    assert compensated(cluster)


async def test_rollback_webhook_rolls_back_now(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"stop": [False, False, True]})
    handle = await rollouts.start(cluster, make_canary(webhooks=[hook("stop", "rollback")]))
    error = await expect_rollback(handle)
    assert error.message == "Rolling back podinfo.test manual webhook invoked"
    assert weights(cluster) == [(90, 10), (80, 20), (100, 0)]
    assert compensated(cluster)
    assert (await rollouts.status(handle)).failed_checks == 0


async def test_cancellation_runs_compensation(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    handle = None

    async def cancel() -> None:
        assert handle is not None
        await handle.cancel()

    cluster.on(ActivityName.SET_WEIGHTS, lambda a: a.canary == 20, cancel, block=True)
    handle = await rollouts.start(cluster)
    error = await expect_rollback(handle)
    assert error.message == "Rolling back podinfo.test workflow cancelled"
    assert weights(cluster) == [(90, 10), (80, 20), (100, 0)]
    assert compensated(cluster)
    assert (await rollouts.status(handle)).phase == Phase.FAILED


async def test_a_target_that_does_not_exist_fails_at_once(rollouts: Rollouts) -> None:
    from temporalio.exceptions import ApplicationError

    cluster = FakeCluster()

    async def missing() -> None:
        raise ApplicationError("deployment podinfo not found", type="TargetNotFound")

    cluster.on(ActivityName.INITIALIZE, lambda _: True, missing, once=False)
    handle = await rollouts.start(cluster)
    error = await expect_rollback(handle)
    assert "initialize failed" in error.message
    assert "deployment podinfo not found" in error.message
    assert len(cluster.called(ActivityName.INITIALIZE)) == 1  # non-retryable: no second try
    assert cluster.mutations() == []
