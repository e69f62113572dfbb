"""The Kubernetes API misbehaving under a rollout: 500s, 409 Conflicts and slow answers on the
objects the activities write (Services, VirtualService, the canary's /scale, the primary).

Temporal retries each failed activity (the Kubernetes client's own retries are off); every
activity reads and converges, so the rollout ends as it would have and each object receives
the writes of a fault-free run — the refused attempts come on top and change nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from temporalio.client import Client

from tests.conftest import ApiProxy
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

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _refused(api: ApiProxy, namespace: str) -> Counter[str]:
    ok = api.writes(namespace, ok_only=False)
    ok.subtract(api.writes(namespace))
    return +ok


async def test_injected_errors_and_slow_answers_are_retried_and_converge(
    stack: FaultStack, temporal: Client, admin_client: Any
) -> None:
    api = stack.api_proxy
    app = make_app(admin_client)
    ns = app.namespace
    doc = canary_doc(ns)
    # Initialization: the first two Service creations answer 500.
    api.add_fault(verb="create", resource="services", namespace=ns, status=500, times=2)
    await initialize(temporal, stack, doc)
    init_writes = api.writes(ns)
    services = {key: n for key, n in init_writes.items() if key.startswith("services/")}
    created_once = [f"services/podinfo{suffix}" for suffix in ("", "-canary", "-primary")]
    assert services == dict.fromkeys(created_once, 1), init_writes
    assert sum(_refused(api, ns).values()) == 2

    image = app.release("6.5.1")
    before = api.writes(ns)
    refused_before = _refused(api, ns)
    # The VirtualService: a 500, then a 409 (the first matching rule answers; both count a hit).
    api.add_fault(verb="patch", resource="virtualservices", namespace=ns, status=500, times=1)
    api.add_fault(verb="patch", resource="virtualservices", namespace=ns, status=409, times=2)
    api.add_fault(resource="virtualservices", namespace=ns, delay_seconds=0.3)
    api.add_fault(
        verb="patch", resource="deployments", namespace=ns, name="podinfo",
        subresource="scale", status=409, times=2,
    )  # fmt: skip
    api.add_fault(
        verb="update", resource="deployments", namespace=ns, name="podinfo-primary",
        status=500, times=1,
    )  # fmt: skip
    api.add_fault(
        verb="update", resource="deployments", namespace=ns, name="podinfo-primary",
        delay_seconds=1.5,
    )  # fmt: skip
    handle = await start(temporal, stack, doc)
    assert await closed(handle, within=90) == "COMPLETED"
    status = await status_of(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)

    assert app.image("podinfo-primary") == image
    assert app.weights() == (100, 0)
    assert app.replicas() == 0
    writes = api.writes(ns)
    writes.subtract(before)
    # What a fault-free run writes: three weight changes (25, 50, back to 0), the canary
    # scaled up and down, the primary replaced once. The refused attempts add nothing.
    assert +writes == Counter(
        {
            "virtualservices/podinfo": 3,
            "deployments/podinfo/scale": 2,
            "deployments/podinfo-primary": 1,
        }
    ), writes
    refused = _refused(api, ns)
    refused.subtract(refused_before)
    assert +refused == Counter(
        {
            "virtualservices/podinfo": 2,
            "deployments/podinfo/scale": 2,
            "deployments/podinfo-primary": 1,
        }
    ), refused
    codes = [
        e["code"]
        for e in api.audit(namespace=ns, resource="virtualservices", verb="patch")
        if e["code"] >= 400
    ]
    assert codes == [500, 409], codes
