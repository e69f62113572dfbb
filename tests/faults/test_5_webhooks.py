"""Webhook peers down or slow, and alert receivers down, judged by Flagger's rule per type:

- ``rollout``: a failed call (refused, timed out, non-2xx) is a failed check; the threshold rolls
  the canary back; a peer slow only once costs one check;
- ``confirm-promotion``: a gate that does not answer 2xx holds the rollout in WaitingPromotion at
  the top weight, asking every interval, until it opens;
- ``post-rollout``: a failure is only reported (an event), the outcome stands;
- alerts (AlertProvider) and ``event`` hooks: a receiver that is down changes nothing.
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
    Peer,
    canary_doc,
    closed,
    closed_port,
    initialize,
    make_app,
    start,
    status_of,
)
from workflows.model import Phase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_rollout_hook_down_rolls_back_at_the_threshold(
    stack: FaultStack, temporal: Client, admin_client: Any
) -> None:
    app = make_app(admin_client, prefix="hook-down")
    dead = f"http://127.0.0.1:{closed_port()}/"
    hook = {"name": "acceptance", "type": "rollout", "url": dead, "timeout": "1s"}
    doc = canary_doc(app.namespace, threshold=2, webhooks=[hook])
    await initialize(temporal, stack, doc)
    app.release("6.5.1")
    handle = await start(temporal, stack, doc)
    assert await closed(handle, within=60) == "FAILED"
    status = await status_of(handle)
    assert status.phase == Phase.FAILED
    assert status.failed_checks == 2
    assert [(c.source, c.outcome) for c in status.failed_check_history] == [
        ("acceptance", "webhook")
    ] * 2
    assert "failed checks threshold reached 2" in status.message
    assert app.weights() == (100, 0)
    assert app.replicas() == 0
    assert app.image("podinfo-primary") == OLD_IMAGE


async def test_rollout_hook_slow_once_costs_one_check(
    stack: FaultStack, temporal: Client, admin_client: Any, peers: list[Peer]
) -> None:
    slow = Peer(delay=3.0).start()
    peers.append(slow)
    app = make_app(admin_client, prefix="hook-slow")
    hook = {"name": "smoke", "type": "rollout", "url": slow.url + "/", "timeout": "1s"}
    doc = canary_doc(app.namespace, threshold=3, webhooks=[hook])
    await initialize(temporal, stack, doc)
    image = app.release("6.5.1")
    handle = await start(temporal, stack, doc)
    deadline = time.monotonic() + 30
    while not slow.received:
        assert time.monotonic() < deadline, "the hook was never called"
        await asyncio.sleep(0.05)
    slow.delay = 0  # answers in time from the next call on
    assert await closed(handle, within=60) == "COMPLETED"
    status = await status_of(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert status.failed_checks == 1
    assert [(c.source, c.outcome) for c in status.failed_check_history] == [("smoke", "webhook")]
    assert app.image("podinfo-primary") == image
    assert len(slow.received) >= 2


async def test_confirm_promotion_gate_down_holds_until_it_answers(
    stack: FaultStack, temporal: Client, admin_client: Any, peers: list[Peer]
) -> None:
    gate = Peer()  # not started yet: the gate is down
    peers.append(gate)
    app = make_app(admin_client, prefix="gate-down")
    hook = {"name": "release-gate", "type": "confirm-promotion", "url": gate.url + "/gate"}
    doc = canary_doc(app.namespace, threshold=2, webhooks=[hook])
    await initialize(temporal, stack, doc)
    image = app.release("6.5.1")
    handle = await start(temporal, stack, doc)
    deadline = time.monotonic() + 30
    while (await status_of(handle)).phase != Phase.WAITING_PROMOTION:
        assert time.monotonic() < deadline, "the rollout never waited for promotion"
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)  # three intervals of asking a gate that is down
    status = await status_of(handle)
    assert status.phase == Phase.WAITING_PROMOTION
    assert status.failed_checks == 0  # a closed gate holds; it is not a failed check
    assert app.weights() == (50, 50)
    assert app.image("podinfo-primary") == OLD_IMAGE
    assert any("waiting for promotion approval release-gate" in e.message for e in status.events)

    gate.start()
    assert await closed(handle, within=30) == "COMPLETED"
    assert (await status_of(handle)).phase == Phase.SUCCEEDED
    assert app.image("podinfo-primary") == image
    assert gate.received


async def test_post_rollout_failure_and_dead_receivers_leave_the_outcome(
    stack: FaultStack, temporal: Client, admin_client: Any, peers: list[Peer]
) -> None:
    failing = Peer(status=500).start()
    peers.append(failing)
    dead = f"http://127.0.0.1:{closed_port()}"
    app = make_app(admin_client, prefix="post")
    provider = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "AlertProvider",
        "metadata": {"name": "on-call"},
        "spec": {"type": "slack", "address": f"{dead}/hooks/slack", "channel": "releases"},
    }
    app.apply("flagger.app", "alertproviders", provider)
    doc = canary_doc(
        app.namespace,
        webhooks=[
            {"name": "notify-cmdb", "type": "post-rollout", "url": failing.url + "/"},
            {"name": "audit-trail", "type": "event", "url": f"{dead}/events", "timeout": "1s"},
        ],
        alerts=[{"name": "on-call", "severity": "info", "providerRef": {"name": "on-call"}}],
    )
    await initialize(temporal, stack, doc)
    image = app.release("6.5.1")
    started = time.monotonic()
    handle = await start(temporal, stack, doc)
    assert await closed(handle, within=60) == "COMPLETED"
    took = time.monotonic() - started
    status = await status_of(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert app.image("podinfo-primary") == image
    assert any(e.message.startswith("Post-rollout hook notify-cmdb failed") for e in status.events)
    assert failing.received  # it was called, and failed
    assert status.failed_checks == 0
    # Dead receivers hold nothing: events are sent without waiting, refused connections fail
    # at once. Two 1 s steps, promotion and finalisation (generous bound for a loaded machine).
    assert took < 30, took


async def test_a_redirecting_webhook_is_a_failed_call_not_followed(
    stack: FaultStack, temporal: Client, admin_client: Any, peers: list[Peer]
) -> None:
    """The documented rule (activities/analysis/webhooks.py): redirects are not followed, a 3xx
    is a failed call — even to a peer that would say yes."""
    yes = Peer().start()
    redirect = Peer(status=307, location=yes.url + "/").start()
    peers += [yes, redirect]
    app = make_app(admin_client, prefix="redirect")
    hook = {"name": "moved", "type": "rollout", "url": redirect.url + "/"}
    doc = canary_doc(app.namespace, threshold=1, webhooks=[hook])
    await initialize(temporal, stack, doc)
    app.release("6.5.1")
    handle = await start(temporal, stack, doc)
    assert await closed(handle, within=60) == "FAILED"
    status = await status_of(handle)
    assert [(c.source, c.outcome) for c in status.failed_check_history] == [("moved", "webhook")]
    assert redirect.received
    assert not yes.received  # the POST was not re-sent to the Location
    assert app.weights() == (100, 0)
