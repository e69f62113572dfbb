"""The Temporal dev server stopped (SIGTERM) in the middle of a rollout and started again on the
same database file and port: the worker reconnects, and the rollout goes on from where it was,
each weight step applied once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from temporalio.client import Client

from tests.faults.conftest import (
    FaultStack,
    canary_doc,
    closed,
    initialize,
    make_app,
    start,
    status_of,
)
from workflows.model import Phase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


async def test_rollout_survives_a_server_restart(
    stack: FaultStack, temporal: Client, admin_client: Any
) -> None:
    app = make_app(admin_client, prefix="restart")
    doc = canary_doc(app.namespace, stepWeight=10, maxWeight=60)
    await initialize(temporal, stack, doc)
    image = app.release("6.5.1")
    before = stack.api_proxy.writes(app.namespace)
    handle = await start(temporal, stack, doc)

    deadline = time.monotonic() + 30
    while (await status_of(handle)).canary_weight < 20:
        assert time.monotonic() < deadline, "the rollout never reached weight 20"
        await asyncio.sleep(0.1)
    stack.temporal.stop()
    weight_at_stop = app.weights()[1]
    await asyncio.sleep(3)  # three analysis intervals with no server
    assert app.weights()[1] == weight_at_stop  # nothing moves without the server
    stack.temporal.start()

    assert await closed(handle, within=90) == "COMPLETED"
    status = await status_of(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert app.image("podinfo-primary") == image
    assert app.weights() == (100, 0)
    assert app.replicas() == 0
    # The worker rode out the outage: the same process, still running.
    assert stack.worker is not None
    assert stack.worker.poll() is None
    weights = [e.message for e in status.events if e.reason == "Advance"]
    assert len(weights) == len(set(weights)) == 6, weights  # 10, 20 … 60, each once
    writes = stack.api_proxy.writes(app.namespace)
    writes.subtract(before)
    assert +writes == Counter(
        {
            "virtualservices/podinfo": 7,
            "deployments/podinfo/scale": 2,
            "deployments/podinfo-primary": 1,
        }
    ), writes
