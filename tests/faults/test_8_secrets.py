"""Secrets never enter workflow history or logs.

A rollout whose webhook authenticates with a ``secretRef`` (a Secret's token sent as a bearer
token) and whose alert goes through an AlertProvider whose address is in a Secret (a Slack
webhook URL is a credential). Both peers misbehave once and quote what they received in their
error answer, as real services do, so the secret reaches the worker's error paths too. Then:

- the peers did receive the token and the secret address (so the scan below can fail);
- no stored history on the dev server — every run of the suite so far, this one included —
  the dev server's database file, the worker's log or the server's log contains either value.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import Client

from tests.faults.conftest import (
    FaultStack,
    Peer,
    Received,
    canary_doc,
    closed,
    initialize,
    make_app,
    start,
    status_of,
)
from workflows.model import Phase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _quote(request: Received) -> tuple[int, bytes]:
    """An error answer quoting the request's credentials, as a careless service does."""
    auth = request.headers.get("Authorization", "")
    return 401, f"rejected {request.path} with {auth!r}".encode()


async def _every_history(temporal: Client) -> bytes:
    chunks: list[bytes] = []
    async for execution in temporal.list_workflows(""):
        handle = temporal.get_workflow_handle(execution.id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            chunks.append(event.SerializeToString())
    assert chunks
    return b"\n".join(chunks)


async def test_secret_values_are_in_no_history_and_no_log(
    stack: FaultStack, temporal: Client, admin_client: Any, peers: list[Peer]
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    hook_path = f"/hooks/{uuid.uuid4().hex}"
    gate = Peer(script=[_quote]).start()
    receiver = Peer(script=[_quote]).start()
    peers += [gate, receiver]
    address = receiver.url + hook_path

    app = make_app(admin_client, prefix="secrets")
    app.secret("gate-token", {"token": token})
    app.secret("slack-url", {"address": address})
    provider = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "AlertProvider",
        "metadata": {"name": "slack"},
        "spec": {"type": "slack", "channel": "releases", "secretRef": {"name": "slack-url"}},
    }
    app.apply("flagger.app", "alertproviders", provider)
    doc = canary_doc(
        app.namespace,
        threshold=3,
        webhooks=[
            {
                "name": "acceptance",
                "type": "rollout",
                "url": gate.url + "/check",
                "secretRef": {"name": "gate-token", "key": "token"},
            }
        ],
        alerts=[{"name": "releases", "severity": "info", "providerRef": {"name": "slack"}}],
    )
    await initialize(temporal, stack, doc)
    app.release("6.5.1")
    handle = await start(temporal, stack, doc)
    assert await closed(handle, within=60) == "COMPLETED"
    status = await status_of(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert status.failed_checks == 1  # the gate's one refusal, quoting the token

    # The peers got the secrets: the scan below looks for values that were really used.
    assert any(r.headers.get("Authorization") == f"Bearer {token}" for r in gate.received)
    assert any(r.path == hook_path for r in receiver.received)
    assert len(receiver.received) >= 2  # the refused alert, then the next ones

    secrets = [token.encode(), hook_path.encode()]
    histories = await _every_history(temporal)
    assert app.namespace.encode() in histories  # this rollout's history is among them
    assert b"gate-token" in histories  # the reference travels, not the value
    # The server's SQLite files (the write-ahead log holds what is not checkpointed yet).
    database = b"".join(p.read_bytes() for p in stack.state_dir.glob("temporal.db*"))
    assert app.namespace.encode() in database  # payloads are stored readable: a leak would show
    stores = {
        "workflow histories": histories,
        "status query": status.model_dump_json().encode(),
        "temporal.db": database,
        "worker.log": stack.worker_log.read_bytes(),
        "temporal.log": (stack.state_dir / "temporal.log").read_bytes(),
    }
    leaks = [
        f"{where}: {s.decode()}" for where, data in stores.items() for s in secrets if s in data
    ]
    assert not leaks, leaks
