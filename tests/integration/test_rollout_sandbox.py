"""Whole rollouts with the real activities on the sandbox and a Temporal dev server: the
scenario's promotion and rollback, checked in the cluster at each phase.
"""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from temporalio.client import WorkflowFailureError

from sandbox.runner import SandboxHandle
from tests.integration.rollout_support import (
    BAD,
    GOOD,
    Scenario,
    api_client,
    canary,
    image,
    production_traffic,
    read_status,
    replicas,
    rollout_worker,
    scenario,
    watch,
    weights,
)
from workflows.model import Phase, RolloutResult, RolloutStatus

__all__ = ["api_client", "rollout_worker", "scenario"]  # fixtures used by the tests below

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def test_healthy_canary_is_promoted_step_by_step(
    scenario: Scenario,
    sandbox_cluster: SandboxHandle,
) -> None:
    spec = canary(scenario.ns)
    await scenario.initialize(spec)

    production_traffic(sandbox_cluster, scenario.ns)
    scenario.release(GOOD)
    handle = await scenario.start(spec)
    phases: list[Phase] = []
    canary_weights: list[int] = []
    canary_replicas: list[int] = []

    def seen(status: RolloutStatus) -> None:
        if not phases or phases[-1] != status.phase:
            phases.append(status.phase)
        if status.phase == Phase.PROGRESSING:
            canary_replicas.append(replicas(scenario.api, scenario.ns, "podinfo"))
            canary_weights.append(weights(scenario.api, scenario.ns)["podinfo-canary"])

    await watch(handle, seen)
    final = await read_status(handle)
    assert final.phase == Phase.SUCCEEDED, final.model_dump_json(indent=1)
    result: RolloutResult = await handle.result()
    assert result.phase == Phase.SUCCEEDED

    # While progressing, the canary ran as Flagger scales it from zero (the target at zero, no
    # HPA: one replica) and took a growing share.
    assert Phase.PROGRESSING in phases
    assert phases[-1] == Phase.SUCCEEDED
    assert max(canary_replicas) == 1
    assert canary_weights == sorted(canary_weights)
    assert max(canary_weights) == 30
    # Promoted: the primary runs the new image, all traffic is on it, the canary is at zero.
    assert image(scenario.api, scenario.ns, "podinfo-primary") == GOOD
    assert weights(scenario.api, scenario.ns) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert replicas(scenario.api, scenario.ns, "podinfo") == 0
    assert final.failed_checks == 0
    assert final.metrics["request-success-rate"].value is not None
    assert final.metrics["request-success-rate"].value >= 99
    messages = [e.message for e in final.events]
    assert f"Advance podinfo.{scenario.ns} canary weight 10" in messages
    assert f"Promotion completed! Scaling down podinfo.{scenario.ns}" in messages


async def test_faulty_canary_is_rolled_back_and_primary_untouched(
    scenario: Scenario,
    sandbox_cluster: SandboxHandle,
) -> None:
    ns = scenario.ns
    spec = canary(ns, threshold=3, max_weight=50)
    await scenario.initialize(spec)
    primary_before = k8s.AppsV1Api(scenario.api).read_namespaced_deployment("podinfo-primary", ns)

    # A bad release arrives as a real one would: a new image whose pods fail 30% of requests
    # and answer slowly.
    scenario.release(BAD, FAULT_ERROR_RATE="0.3", FAULT_LATENCY_MS="700")
    production_traffic(sandbox_cluster, ns)
    handle = await scenario.start(spec)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "failed checks threshold reached 3" in str(failure.value.cause)

    status = await read_status(handle)
    assert status.phase == Phase.FAILED
    assert status.failed_checks == 3
    reasons = {c.source for c in status.failed_check_history}
    assert reasons & {"request-success-rate", "request-duration"}
    rate = status.metrics["request-success-rate"]
    if rate.value is not None:  # the window may still be empty at the first low weight
        assert rate.value < 99
    # Rolled back: traffic on the primary, the canary at zero, the primary never touched.
    assert weights(scenario.api, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert replicas(scenario.api, ns, "podinfo") == 0
    primary_after = k8s.AppsV1Api(scenario.api).read_namespaced_deployment("podinfo-primary", ns)
    assert primary_after.metadata.generation == primary_before.metadata.generation
    assert image(scenario.api, ns, "podinfo-primary") == "quay.io/stefanprodan/podinfo:1.4.0"
    messages = [e.message for e in status.events]
    assert any(m.startswith(f"Halt podinfo.{ns} advancement") for m in messages)
    assert f"Canary failed! Scaling down podinfo.{ns}" in messages
