"""The worker SIGKILLed in every phase of a rollout, then restarted: each rollout ends as it
would have, and no write is repeated.

Six rollouts run at once, each parked in one phase when the worker dies:

- scaling: in ``wait_ready`` of the canary — its pods take 15 s to become ready;
- steps: in the timer between two weight steps — sixteen 1 s steps;
- metric: in its step's checks (``analyse_step``) — its Prometheus (a proxy in front of the
  real one) holds the query;
- promote: in ``promote``, after the primary's update landed and before the activity completed
  — the API proxy delays the activity's next read (the primary's HPA) by 15 s;
- rollback: in the rollback's ``scale_canary`` — the API proxy delays the canary's /scale;
- initialize: a target's first rollout, in ``initialize`` after the primary was created and
  before the target was scaled to zero and the primary marked — a Service read is delayed.

The worker is killed once all six are parked, and started again a second later. Temporal
retries the lost activities after their timeouts (heartbeat 5 s for ``wait_ready`` and
``analyse_step``, start-to-close 60 s for the others); each retry reads the object, finds it
converged where the dead attempt got that far, and writes nothing more. So every object
receives exactly the writes of a run without the crash: the table in tests/faults/README.md.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from tests.faults.conftest import (
    OLD_IMAGE,
    App,
    FaultStack,
    HoldingProxy,
    canary_doc,
    closed,
    closed_port,
    initialize,
    make_app,
    metric_template,
    pending_activities,
    start,
    status_of,
    templated_metric,
)
from workflows.model import Phase, RolloutStatus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


PARK_SECONDS = 15


@dataclass
class Rollout:
    name: str
    app: App
    doc: dict[str, Any]
    outcome: Phase
    writes: Counter[str]
    parked: Callable[[RolloutStatus, list[str]], bool]
    image: str = ""
    handle: WorkflowHandle[Any, Any] | None = None
    before: Counter[str] = field(default_factory=Counter)


def _succeeded_writes(steps: int) -> Counter[str]:
    """A promoted rollout: one VirtualService patch per step and one back to 0, the canary
    scaled up and down through /scale, the primary replaced once."""
    return Counter(
        {
            "virtualservices/podinfo": steps + 1,
            "deployments/podinfo/scale": 2,
            "deployments/podinfo-primary": 1,
        }
    )


async def _observe(rollouts: list[Rollout]) -> dict[str, str]:
    """Each rollout's phase and pending activities, for the record and the park predicates
    (asked concurrently: the metric rollout's query is held for at most 5 s)."""

    async def one(r: Rollout) -> str:
        assert r.handle is not None
        try:
            status, pending = await asyncio.gather(
                status_of(r.handle), pending_activities(r.handle)
            )
        except Exception as exc:  # a query racing a workflow task: ask again
            return f"? {exc}"
        mark = "parked" if r.parked(status, pending) else "moving"
        return f"{mark} {status.phase} w={status.canary_weight} pending={pending}"

    seen = await asyncio.gather(*(one(r) for r in rollouts))
    return {r.name: state for r, state in zip(rollouts, seen, strict=True)}


async def test_worker_killed_in_every_phase_finishes_each_rollout_once(
    stack: FaultStack, temporal: Client, admin_client: Any
) -> None:
    proxy = HoldingProxy(stack.sandbox.prometheus_url).start()
    try:
        await _run(stack, temporal, admin_client, proxy)
    finally:
        proxy.stop()


async def _run(stack: FaultStack, temporal: Client, admin_client: Any, proxy: HoldingProxy) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/"
    scaling = Rollout(
        "scaling",
        make_app(admin_client, prefix="kill-scale"),
        {},
        Phase.SUCCEEDED,
        _succeeded_writes(2),
        lambda s, p: s.phase == Phase.PROGRESSING and "wait_ready" in p,
    )
    steps = Rollout(
        "steps",
        make_app(admin_client, prefix="kill-steps"),
        {"stepWeight": 5, "maxWeight": 80},
        Phase.SUCCEEDED,
        _succeeded_writes(16),
        lambda s, p: s.phase == Phase.PROGRESSING and 5 <= s.canary_weight < 60 and not p,
    )
    metric = Rollout(
        "metric",
        make_app(admin_client, prefix="kill-metric"),
        {"metrics": [templated_metric("held-query", "held")]},
        Phase.SUCCEEDED,
        _succeeded_writes(2),
        lambda s, p: "analyse_step" in p,
    )
    promote = Rollout(
        "promote",
        make_app(admin_client, prefix="kill-promote"),
        {"stepWeight": 50, "maxWeight": 50},
        Phase.SUCCEEDED,
        _succeeded_writes(1),
        lambda s, p: "promote" in p,
    )
    rollback = Rollout(
        "rollback",
        make_app(admin_client, prefix="kill-rollback"),
        {
            "interval": "2s",
            "threshold": 1,
            "webhooks": [{"name": "smoke", "type": "rollout", "url": dead, "timeout": "2s"}],
        },
        Phase.FAILED,
        Counter({"virtualservices/podinfo": 2, "deployments/podinfo/scale": 2}),
        lambda s, p: s.failed_checks == 1 and "scale_canary" in p,
    )
    rollouts = [scaling, steps, metric, promote, rollback]
    # A sixth, the target's very first rollout, parked inside ``initialize`` after the primary
    # was created and before the target is scaled to zero and the primary marked initialized.
    first = Rollout(
        "initialize",
        make_app(admin_client, prefix="kill-init"),
        {},
        Phase.SUCCEEDED,
        Counter(
            {
                "deployments/podinfo-primary": 2,  # created, then marked "initialized"
                "services/podinfo": 1,
                "services/podinfo-canary": 1,
                "services/podinfo-primary": 1,
                "destinationrules/podinfo-canary": 1,
                "destinationrules/podinfo-primary": 1,
                "virtualservices/podinfo": 1,
                "deployments/podinfo/scale": 1,  # the target to zero
            }
        ),
        lambda s, p: "initialize" in p,
    )
    first.doc = canary_doc(first.app.namespace)
    first.image = OLD_IMAGE
    metric.app.apply(
        "flagger.app", "metrictemplates", metric_template("held", proxy.url, "vector(100)")
    )
    for r in rollouts:
        r.doc = canary_doc(r.app.namespace, **r.doc)
    promote.app.hpa(min_replicas=1, max_replicas=2)
    promote.doc["spec"]["autoscalerRef"] = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo",
    }  # fmt: skip
    await asyncio.gather(*(initialize(temporal, stack, r.doc) for r in rollouts))

    # New revisions; the faults that park two of them; then all but the metric one start.
    scaling.image = scaling.app.release("6.5.1", ready_delay=PARK_SECONDS)
    for r in rollouts[1:]:
        r.image = r.app.release("6.5.1")
    for r in rollouts:
        r.before = stack.api_proxy.writes(r.app.namespace)
    first.before = stack.api_proxy.writes(first.app.namespace)
    stack.api_proxy.add_fault(
        verb="get", resource="services", namespace=first.app.namespace,
        name="podinfo-primary", delay_seconds=PARK_SECONDS, times=1,
    )  # fmt: skip
    proxy.hold()
    for r in (first, scaling, steps, promote, rollback):
        r.handle = await start(temporal, stack, r.doc)

    # The promotion replaces the primary, then converges the primary's HPA: the read of that
    # HPA is delayed, so the worker dies after the write and before the activity completes —
    # the answer Temporal never gets. (Installed once the rollout's initialize has passed.)
    deadline = time.monotonic() + 30
    while (await status_of(promote.handle)).phase != Phase.PROGRESSING:  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "the promote rollout never started progressing"
        await asyncio.sleep(0.1)
    stack.api_proxy.add_fault(
        verb="get", resource="horizontalpodautoscalers", namespace=promote.app.namespace,
        name="podinfo-primary", delay_seconds=PARK_SECONDS, times=1,
    )  # fmt: skip
    # The rollback's /scale is delayed only once the canary is up (its scale-up passes). The
    # API proxy holds a delayed request before forwarding it and drops it when its client goes
    # away, so this write dies with the worker's connection (never forwarded, not applied): the
    # retry makes it.
    deadline = time.monotonic() + 30
    while (await status_of(rollback.handle)).canary_weight == 0:  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "the rollback rollout never shifted traffic"
        await asyncio.sleep(0.1)
    stack.api_proxy.add_fault(
        verb="patch", resource="deployments", namespace=rollback.app.namespace,
        name="podinfo", subresource="scale", delay_seconds=PARK_SECONDS, times=1,
    )  # fmt: skip
    # The metric query is held for at most the provider's 5 s timeout: start it last.
    metric.handle = await start(temporal, stack, metric.doc)

    seen: dict[str, str] = {}
    deadline = time.monotonic() + 20
    while True:
        seen = await _observe([*rollouts, first])
        if all(v.startswith("parked") for v in seen.values()):
            break
        assert time.monotonic() < deadline, f"not all parked: {seen}"
        await asyncio.sleep(0.1)
    promote_landed = promote.app.image("podinfo-primary") == promote.image
    # The first rollout dies half-initialized: primary created, target not yet scaled down.
    first_half_done = (first.app.image("podinfo-primary"), first.app.replicas())
    stack.kill_worker()
    proxy.release()  # the dead worker's query is gone; the retry's answers at once
    await asyncio.sleep(1)
    stack.start_worker()

    # The promotion's write had landed before the worker died: its retry must not repeat it.
    assert promote_landed, "the primary was not replaced before the kill"
    assert first_half_done == (OLD_IMAGE, 1), first_half_done

    watched = [*rollouts, first]
    ends = await asyncio.gather(*(closed(r.handle, within=150) for r in watched))  # type: ignore[arg-type]
    report = {r.name: end for r, end in zip(watched, ends, strict=True)}
    for r in watched:
        assert r.handle is not None
        status = await status_of(r.handle)
        where = f"{r.name} (parked as {seen[r.name]}): {status.model_dump_json(indent=1)}"
        assert status.phase == r.outcome, where
        assert report[r.name] == ("COMPLETED" if r.outcome == Phase.SUCCEEDED else "FAILED")
        assert r.app.weights() == (100, 0), where
        assert r.app.replicas() == 0, where
        if r is first:
            assert status.message.startswith("Initialization done"), where
        if r.outcome == Phase.SUCCEEDED:
            assert r.app.image("podinfo-primary") == r.image, where
            assert status.failed_checks == 0, where
        else:
            assert r.app.image("podinfo-primary") == OLD_IMAGE, where
            assert status.failed_checks == 1, where
        writes = stack.api_proxy.writes(r.app.namespace)
        writes.subtract(r.before)
        assert +writes == r.writes, f"{r.name}: {+writes} (expected {r.writes})"
