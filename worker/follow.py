"""Following a rollout to its end, and the exit code its outcome means.

The outcome comes from the workflow's result (a promoted rollout completes; a rolled-back one
FAILS with ``RolloutFailed``), so it is the server's word, not a guess from the last status seen.
While waiting, the ``status`` query is polled for display only: a query that fails (no worker for
a moment) is skipped, never fatal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from worker.errors import EXIT_FAILED, EXIT_OK, RolloutNotFoundError, UnreachableError
from worker.rollout_ops import QUERY_TIMEOUT, describe_failure
from worker.rollout_view import RolloutFollower
from workflows.model import Phase, RolloutResult, RolloutStatus

POLL_INTERVAL = timedelta(seconds=1)


@dataclass(frozen=True)
class Outcome:
    """How a rollout ended and the exit code that tells CI."""

    exit_code: int
    phase: Phase
    message: str


async def outcome_of(handle: WorkflowHandle[Any, Any]) -> Outcome:
    """Wait for the rollout's last run to close and say how it ended."""
    try:
        result = await handle.result(follow_runs=True)
    except WorkflowFailureError as err:
        return Outcome(EXIT_FAILED, Phase.FAILED, describe_failure(err))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise RolloutNotFoundError(f"no rollout {handle.id}") from err
        raise UnreachableError(f"lost Temporal while waiting for {handle.id}: {err}") from err
    if isinstance(result, dict):  # a handle without a result type hands back plain JSON
        result = RolloutResult.model_validate(result)
    if isinstance(result, RolloutResult):
        code = EXIT_OK if result.phase == Phase.SUCCEEDED else EXIT_FAILED
        return Outcome(code, result.phase, result.message)
    return Outcome(EXIT_OK, Phase.SUCCEEDED, "")


async def poll_status(client: Client, workflow_id: str) -> RolloutStatus | None:
    """The status query, or None when no worker answers right now."""
    try:
        status: RolloutStatus = await client.get_workflow_handle(workflow_id).query(
            "status", result_type=RolloutStatus, rpc_timeout=QUERY_TIMEOUT
        )
    except Exception:  # display only: the outcome comes from the result, not from here
        return None
    return status


async def follow(
    client: Client,
    workflow_id: str,
    view: RolloutFollower,
    *,
    poll: timedelta = POLL_INTERVAL,
) -> Outcome:
    """Show the rollout's progress until it ends; its outcome."""
    handle = client.get_workflow_handle(workflow_id, result_type=RolloutResult)
    done = asyncio.create_task(outcome_of(handle))
    try:
        while not done.done():
            status = await poll_status(client, workflow_id)
            if status is not None:
                view.show(status)
            await asyncio.wait([done], timeout=poll.total_seconds())
        final = await poll_status(client, workflow_id)
        if final is not None:
            view.show(final)
        return done.result()
    finally:
        if not done.done():
            done.cancel()
