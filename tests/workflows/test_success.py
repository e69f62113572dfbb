"""Successful rollouts: the happy path, weight schedules, promotion steps, short cuts."""

from __future__ import annotations

import os
import time

from temporalio.api.sdk.v1 import WorkflowMetadata

from tests.workflows.conftest import Rollouts, event_messages, hook, make_canary, weights
from tests.workflows.fakes import FakeCluster
from workflows.activity_api import ActivityName
from workflows.model import Phase
from workflows.rollout import CanaryRolloutWorkflow
from workflows.search import CANARY_PHASE, CANARY_REVISION, CANARY_TARGET, CANARY_WEIGHT


async def test_success_advances_promotes_and_scales_down(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    handle = await rollouts.start(cluster, requested_by="ci", reason="pipeline 42")
    result = await handle.result()

    assert result.phase == Phase.SUCCEEDED
    assert result.revision == "rev-2"
    assert weights(cluster) == [(90, 10), (80, 20), (70, 30), (60, 40), (50, 50), (100, 0)]
    assert cluster.weights == (100, 0)
    assert cluster.canary_replicas == 0
    assert cluster.primary_revision == "rev-2"
    # scale up before any traffic; promote before routing back; scale down last
    assert cluster.mutations()[0] == (ActivityName.SCALE_CANARY, None)
    assert cluster.mutations()[-3:] == [
        (ActivityName.PROMOTE, "rev-2"),
        (ActivityName.SET_WEIGHTS, (100, 0)),
        (ActivityName.SCALE_CANARY, 0),
    ]

    status = await rollouts.status(handle)
    assert status.phase == Phase.SUCCEEDED
    assert (status.canary_weight, status.failed_checks, status.iterations) == (0, 0, 6)
    assert status.last_promoted_revision == "rev-2"
    # Flagger's current wording: one "New revision detected! Scaling up <target>" event, and
    # the promotion's traffic routing.
    assert event_messages(status) == [
        "New revision detected! Scaling up podinfo.test",
        "Starting canary analysis for podinfo.test",
        *(f"Advance podinfo.test canary weight {w}" for w in (10, 20, 30, 40, 50)),
        "Copying podinfo.test template spec to podinfo-primary.test",
        "Routing all traffic to primary",
        "Promotion completed! Scaling down podinfo.test",
    ]
    assert sorted(cluster.event_messages()) == sorted(event_messages(status))
    severities = {e.message: e.alert_severity for e in cluster.called(ActivityName.RECORD_EVENT)}
    assert severities["New revision detected! Scaling up podinfo.test"] == "info"
    assert severities["Promotion completed! Scaling down podinfo.test"] == "info"
    assert severities["Advance podinfo.test canary weight 10"] is None
    assert set(status.metrics) == {"request-success-rate", "request-duration"}
    assert [(a.action, a.identity, a.reason) for a in status.actions] == [
        ("start", "ci", "pipeline 42")
    ]

    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(CANARY_PHASE) == "Succeeded"
    assert attributes.get(CANARY_WEIGHT) == 0
    assert attributes.get(CANARY_TARGET) == "podinfo"
    assert attributes.get(CANARY_REVISION) == "rev-2"


async def test_ten_steps_take_well_under_a_second(rollouts: Rollouts) -> None:
    canary = make_canary(maxWeight=100, stepWeight=10)
    timings = []
    for _ in range(3):  # the best of three: one slow run on a busy machine proves nothing
        cluster = FakeCluster()
        started = time.perf_counter()
        await (await rollouts.start(cluster, canary)).result()
        timings.append(time.perf_counter() - started)
        assert [c for _, c in weights(cluster)] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 0]
    # A second on an idle machine; a machine running more than one job per CPU gets more.
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    budget = max(1.0, load)
    print(f"10-step canary: best {min(timings):.3f}s wall time (load {load:.1f}/CPU)")
    assert min(timings) < budget


async def test_history_stays_small_per_step(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    short = await rollouts.start(cluster, make_canary(maxWeight=100, stepWeight=50))
    await short.result()
    long = await rollouts.start(FakeCluster(), make_canary(maxWeight=100, stepWeight=10))
    await long.result()
    short_events = len((await short.fetch_history()).events)
    long_events = len((await long.fetch_history()).events)
    per_step = (long_events - short_events) / 8
    print(f"history: {short_events} events for 2 steps, {long_events} for 10: {per_step:.1f}/step")
    # 25–26.75 measured: the Canary status writes are coalesced (a write waits for the one before
    # it), so how many a step needs depends on timing. A ceiling against growth, not a target.
    assert per_step <= 28


async def test_step_weights(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    canary = make_canary(stepWeights=[1, 5, 20, 50], stepWeight=None, maxWeight=None)
    await (await rollouts.start(cluster, canary)).result()
    assert [c for _, c in weights(cluster)] == [1, 5, 20, 50, 0]


async def test_step_weight_promotion_routes_back_in_steps(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    canary = make_canary(stepWeightPromotion=20)
    handle = await rollouts.start(cluster, canary)
    await handle.result()
    assert weights(cluster)[-4:] == [(50, 50), (70, 30), (90, 10), (100, 0)]
    history = await handle.fetch_history()
    timers = [e for e in history.events if e.HasField("timer_started_event_attributes")]
    # five analysis intervals + one for the promotion-complete check + two promotion steps
    assert len(timers) == 6 + 2


async def test_revision_equal_to_last_promoted_completes_at_once(rollouts: Rollouts) -> None:
    cluster = FakeCluster(revision="rev-1", promoted_revision="rev-1")
    handle = await rollouts.start(cluster)
    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert "already promoted" in result.message
    assert cluster.mutations() == []
    assert cluster.called(ActivityName.CHECK_METRIC) == []


async def test_first_initialization_needs_no_analysis(rollouts: Rollouts) -> None:
    cluster = FakeCluster(first_initialization=True, promoted_revision=None)
    result = await (await rollouts.start(cluster)).result()
    assert result.message == "Initialization done! podinfo.test"
    assert cluster.mutations() == []


async def test_reads_the_revision_when_the_input_has_none(rollouts: Rollouts) -> None:
    cluster = FakeCluster(revision="rev-9")
    result = await (await rollouts.start(cluster, revision=None)).result()
    assert result.revision == "rev-9"
    assert len(cluster.called(ActivityName.READ_REVISION)) == 1
    assert cluster.primary_revision == "rev-9"


async def test_skip_analysis_promotes_without_checks(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    result = await (await rollouts.start(cluster, make_canary(skipAnalysis=True))).result()
    assert result.phase == Phase.SUCCEEDED
    assert cluster.called(ActivityName.CHECK_METRIC) == []
    assert weights(cluster) == [(100, 0)]


async def test_events_never_fail_a_rollout(rollouts: Rollouts) -> None:
    cluster = FakeCluster(fail_events=True)
    result = await (await rollouts.start(cluster)).result()
    assert result.phase == Phase.SUCCEEDED
    assert cluster.event_messages()


async def test_post_rollout_hook_failure_is_only_reported(rollouts: Rollouts) -> None:
    cluster = FakeCluster(webhooks={"notify": [False]})
    canary = make_canary(webhooks=[hook("notify", "post-rollout")])
    handle = await rollouts.start(cluster, canary)
    assert (await handle.result()).phase == Phase.SUCCEEDED
    (call,) = [c for c in cluster.called(ActivityName.CALL_WEBHOOK) if c.webhook.name == "notify"]
    assert call.phase == Phase.SUCCEEDED
    status = await handle.query(CanaryRolloutWorkflow.status)
    assert status.events[-1].message.startswith("Post-rollout hook notify failed")


async def test_summaries_and_current_details_for_the_web_ui(rollouts: Rollouts) -> None:
    handle = await rollouts.start(FakeCluster())
    await handle.result()
    converter = rollouts.client.data_converter.payload_converter
    summaries = [
        converter.from_payload(e.user_metadata.summary, str)
        for e in (await handle.fetch_history()).events
        if e.HasField("user_metadata") and e.user_metadata.HasField("summary")
    ]
    assert "set weights primary 80 / canary 20" in summaries
    assert "analysis interval 30s" in summaries
    # Every check of a step in one activity, each named with its bound.
    assert "check request-success-rate ≥ 99, request-duration ≤ 500" in summaries
    assert "scale podinfo to 0" in summaries
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "| phase | Succeeded |" in metadata.current_details
    assert "| canary weight | 0% |" in metadata.current_details


async def test_a_wait_survives_many_failed_attempts(rollouts: Rollouts) -> None:
    """A worker too busy to heartbeat in time loses an attempt of wait_ready, never the rollout:
    its attempts are unlimited (the deadline's rules and an hour bound it), where three used to
    fail one in fifty of 2,000 rollouts started at once."""
    cluster = FakeCluster(wait_ready_errors=5)
    handle = await rollouts.start(cluster)
    result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert cluster.wait_ready_errors == 0
    assert len(cluster.called(ActivityName.WAIT_READY)) >= 6
