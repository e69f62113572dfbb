"""The sandbox's Prometheus killed (SIGKILL by the pid in its pid file) during analysis.

Each metric check then answers "provider error" (the activity succeeds with that verdict; the
query is not retried for long), and the failed-check threshold decides: a Prometheus down for
good rolls the canary back at the threshold; one back in fewer intervals than the threshold
leaves the rollout to finish as it would have.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from temporalio.client import Client

from tests.faults.conftest import (
    OLD_IMAGE,
    FaultStack,
    canary_doc,
    closed,
    initialize,
    make_app,
    metric_template,
    start,
    status_of,
    templated_metric,
)
from workflows.model import CheckOutcome, Phase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def _rollout_with_metric(
    stack: FaultStack, temporal: Client, admin_client: Any, **analysis: Any
) -> tuple[Any, Any, str]:
    app = make_app(admin_client, prefix="prom")
    # A query that always has a value on a live Prometheus: only the outage can fail it.
    app.apply(
        "flagger.app", "metrictemplates", metric_template("always", stack.sandbox.prometheus_url)
    )
    doc = canary_doc(app.namespace, metrics=[templated_metric("always-100", "always")], **analysis)
    await initialize(temporal, stack, doc)
    image = app.release("6.5.1")
    return app, await start(temporal, stack, doc), image


async def _until_weight(handle: Any, weight: int) -> None:
    deadline = time.monotonic() + 30
    while (await status_of(handle)).canary_weight < weight:
        assert time.monotonic() < deadline, f"the rollout never reached weight {weight}"
        await asyncio.sleep(0.1)


async def test_prometheus_down_rolls_back_at_the_threshold(
    stack: FaultStack, temporal: Client, admin_client: Any
) -> None:
    app, handle, _ = await _rollout_with_metric(stack, temporal, admin_client, threshold=2)
    await _until_weight(handle, 25)
    argv = stack.kill_prometheus()
    try:
        assert await closed(handle, within=60) == "FAILED"
    finally:
        stack.start_prometheus(argv)
    status = await status_of(handle)
    assert status.phase == Phase.FAILED, status.model_dump_json(indent=1)
    assert status.failed_checks == 2
    outcomes = [(c.source, c.outcome) for c in status.failed_check_history]
    assert outcomes == [("always-100", CheckOutcome.PROVIDER_ERROR.value)] * 2, outcomes
    assert "unreachable" in status.failed_check_history[-1].message
    assert status.metrics["always-100"].outcome == CheckOutcome.PROVIDER_ERROR
    assert "failed checks threshold reached 2" in status.message
    assert app.weights() == (100, 0)
    assert app.replicas() == 0
    assert app.image("podinfo-primary") == OLD_IMAGE


async def test_prometheus_back_within_the_threshold_lets_the_rollout_finish(
    stack: FaultStack, temporal: Client, admin_client: Any
) -> None:
    app, handle, image = await _rollout_with_metric(
        stack, temporal, admin_client, threshold=5, stepWeight=10, maxWeight=60
    )
    await _until_weight(handle, 20)
    argv = stack.kill_prometheus()
    try:
        # Back as soon as a check has failed without it (1 s intervals; a busy machine may
        # take longer than two of them to run the first check).
        deadline = asyncio.get_running_loop().time() + 20
        while (await status_of(handle)).failed_checks < 1:
            assert asyncio.get_running_loop().time() < deadline, "no check failed"
            await asyncio.sleep(0.1)
    finally:
        stack.start_prometheus(argv)
    assert await closed(handle, within=60) == "COMPLETED"
    status = await status_of(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert 1 <= status.failed_checks < 5
    assert {c.outcome for c in status.failed_check_history} == {CheckOutcome.PROVIDER_ERROR.value}
    assert status.metrics["always-100"].outcome == CheckOutcome.OK  # the last check: back
    assert app.image("podinfo-primary") == image
    assert app.weights() == (100, 0)
    assert app.replicas() == 0
