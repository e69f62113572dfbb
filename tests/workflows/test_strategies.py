"""A/B testing, Blue/Green and mirroring as Flagger's scheduler runs them (issue 13)."""

from __future__ import annotations

from typing import Any

from tests.workflows.conftest import (
    Rollouts,
    event_messages,
    expect_rollback,
    hook,
    make_canary,
)
from tests.workflows.fakes import FakeCluster, failing, passing
from workflows.activity_api import ActivityName
from workflows.model import Phase
from workflows.spec import Canary

AB_MATCH = [{"headers": {"x-canary": {"exact": "insider"}}}]


def _iterative(**analysis: Any) -> Canary:
    # Flagger's tutorials set iterations and no weights at all.
    return make_canary(stepWeight=None, maxWeight=None, **analysis)


def _routes(cluster: FakeCluster) -> list[tuple[int, int, bool]]:
    calls = cluster.called(ActivityName.SET_WEIGHTS)
    return [(a.primary, a.canary, a.mirrored) for a in calls]


def _checked_intervals(cluster: FakeCluster) -> int:
    checks = cluster.called(ActivityName.CHECK_METRIC)
    return sum(1 for c in checks if c.metric.name == "request-success-rate")


async def test_blue_green_switches_after_the_iterations_then_promotes(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    handle = await rollouts.start(cluster, _iterative(iterations=3))
    result = await handle.result()

    assert result.phase == Phase.SUCCEEDED
    # No production traffic until the switch, then all of it at once, then back to the
    # promoted primary.
    assert _routes(cluster) == [(0, 100, False), (100, 0, False)]
    assert cluster.mutations()[-4:] == [
        (ActivityName.SET_WEIGHTS, (0, 100)),
        (ActivityName.PROMOTE, "rev-2"),
        (ActivityName.SET_WEIGHTS, (100, 0)),
        (ActivityName.SCALE_CANARY, 0),
    ]
    # Flagger's runBlueGreen: iterations 2..3 and the switch each follow a passing
    # interval, and the canary passes once more under all the traffic.
    assert _checked_intervals(cluster) == 4
    status = await rollouts.status(handle)
    assert status.iterations == 4
    messages = event_messages(status)
    for n in (1, 2, 3):
        assert f"Advance podinfo.test canary iteration {n}/3" in messages
    assert "Routing all traffic to canary" in messages
    assert not any("canary weight" in m for m in messages)


async def test_blue_green_with_mirroring_mirrors_until_the_switch(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    handle = await rollouts.start(cluster, _iterative(iterations=2, mirror=True, mirrorWeight=50))
    await handle.result()

    assert _routes(cluster) == [(100, 0, True), (0, 100, False), (100, 0, False)]
    first = cluster.called(ActivityName.SET_WEIGHTS)[0]
    assert first.mirror_weight == 50
    status = await rollouts.status(handle)
    assert "Stop traffic mirroring and route all traffic to canary" in (event_messages(status))


async def test_blue_green_rollback_restores_the_plain_routes(rollouts: Rollouts) -> None:
    bad = failing("request-success-rate")
    cluster = FakeCluster(metrics={"request-success-rate": [passing("request-success-rate"), bad]})
    handle = await rollouts.start(cluster, _iterative(iterations=5, mirror=True, threshold=2))
    await expect_rollback(handle)

    assert _routes(cluster)[0] == (100, 0, True)
    assert _routes(cluster)[-1] == (100, 0, False)  # the undo: no mirror, all to the primary
    assert cluster.canary_replicas == 0
    assert cluster.primary_revision is None  # never promoted
    status = await rollouts.status(handle)
    assert status.phase == Phase.FAILED
    assert status.iterations == 2


async def test_blue_green_waits_for_confirm_promotion_before_the_switch(
    rollouts: Rollouts,
) -> None:
    cluster = FakeCluster(webhooks={"gate": [False, False, True]})
    canary = _iterative(iterations=1, webhooks=[hook("gate", "confirm-promotion")])
    handle = await rollouts.start(cluster, canary)
    await handle.result()
    gate_calls = [c for c in cluster.called(ActivityName.CALL_WEBHOOK) if c.webhook.name == "gate"]
    assert len(gate_calls) == 3
    assert _routes(cluster) == [(0, 100, False), (100, 0, False)]


async def test_ab_testing_routes_the_matched_users_then_promotes(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    handle = await rollouts.start(cluster, _iterative(iterations=3, match=AB_MATCH))
    result = await handle.result()

    assert result.phase == Phase.SUCCEEDED
    # 0/100 on the matched route only (the router keeps the rest on the primary), then
    # everyone on the promoted primary.
    assert _routes(cluster) == [(0, 100, False), (100, 0, False)]
    assert cluster.mutations()[-3:] == [
        (ActivityName.PROMOTE, "rev-2"),
        (ActivityName.SET_WEIGHTS, (100, 0)),
        (ActivityName.SCALE_CANARY, 0),
    ]
    assert _checked_intervals(cluster) == 3
    status = await rollouts.status(handle)
    assert (status.iterations, status.canary_weight) == (3, 0)
    assert "Advance podinfo.test canary iteration 3/3" in event_messages(status)


async def test_ab_testing_rolls_back_when_the_matched_users_see_errors(
    rollouts: Rollouts,
) -> None:
    cluster = FakeCluster(metrics={"request-success-rate": [failing("request-success-rate")]})
    handle = await rollouts.start(cluster, _iterative(iterations=10, match=AB_MATCH, threshold=2))
    await expect_rollback(handle)

    assert _routes(cluster) == [(0, 100, False), (100, 0, False)]
    assert cluster.primary_revision is None
    status = await rollouts.status(handle)
    assert status.failed_checks == 2


async def test_canary_with_mirroring_mirrors_one_interval_first(rollouts: Rollouts) -> None:
    cluster = FakeCluster()
    handle = await rollouts.start(cluster, make_canary(mirror=True, maxWeight=30))
    await handle.result()

    assert _routes(cluster) == [
        (100, 0, True),
        (90, 10, False),
        (80, 20, False),
        (70, 30, False),
        (100, 0, False),
    ]
    messages = event_messages(await rollouts.status(handle))
    assert "Start traffic mirroring to podinfo.test" in messages
    assert "Advance podinfo.test canary weight 10" in messages


async def test_session_affinity_sets_one_cookie_per_run_then_expires_it(
    rollouts: Rollouts,
) -> None:
    cluster = FakeCluster()
    affinity = {"cookieName": "flagger-cookie", "maxAge": 21600}
    handle = await rollouts.start(cluster, make_canary(sessionAffinity=affinity, maxWeight=20))
    await handle.result()

    sessions = [a.session for a in cluster.called(ActivityName.SET_WEIGHTS)]
    assert all(s is not None for s in sessions)
    cookies = {s.cookie for s in sessions if s is not None and s.cookie}
    assert len(cookies) == 1  # one cookie for the whole run
    (cookie,) = cookies
    assert cookie.startswith("flagger-cookie=")
    assert len(cookie.split("=")[1]) == 10
    last = sessions[-1]
    assert last is not None
    assert (last.cookie, last.previous_cookie, last.max_age) == (None, cookie, 21600)
    status = await rollouts.status(handle)
    assert status.session_affinity_cookie is None
    assert status.previous_session_affinity_cookie == cookie
