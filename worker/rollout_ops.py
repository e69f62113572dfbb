"""What the ``coalmine rollout`` commands ask of Temporal: start, read, steer, retry.

Kept apart from the command definitions (``worker.rollout_cli``) and the rendering
(``worker.rollout_view``), so each can be tested alone. Every failure that the user must act on
is raised as a ``CliError`` with its exit code; Temporal's own exception types stay in here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from worker.errors import (
    BadInputError,
    RequestRefusedError,
    RolloutNotFoundError,
    UnreachableError,
)
from workflows.model import (
    WORKFLOW_NAME,
    OperatorRequest,
    Phase,
    RolloutInput,
    RolloutStatus,
)
from workflows.search import (
    CANARY_CLUSTER,
    CANARY_NAMESPACE,
    CANARY_PHASE,
    CANARY_REVISION,
    CANARY_STRATEGY,
    CANARY_TARGET,
    CANARY_WEIGHT,
)

_SETUP_HINT = " (register the rollout search attributes with `coalmine temporal setup`)"
QUERY_TIMEOUT = timedelta(seconds=5)
ACCEPT_TIMEOUT = timedelta(seconds=60)
"""How long a start waits for a worker to take the rollout's first task."""


START_TOKEN = "coalmine-start-token"
"""Memo key of the token that tells which start request created a run."""


@dataclass(frozen=True)
class Started:
    """A rollout start: the handle, and whether a running rollout got the new revision."""

    handle: WorkflowHandle[Any, Any]
    existing: bool


async def start_rollout(
    client: Client,
    *,
    workflow_id: str,
    task_queue: str,
    rollout: RolloutInput,
    summary: str,
    details: str,
    revision_request: OperatorRequest,
    accept_timeout: timedelta = ACCEPT_TIMEOUT,
) -> Started:
    """Start the rollout, or hand the new revision to the running one (update-with-start).

    One request does both, so two CI jobs racing for one target cannot start two rollouts:
    with ``USE_EXISTING`` the server starts the workflow when none runs and delivers the
    ``new_revision`` update to whichever run holds the ID.
    """
    canary = rollout.canary
    # Whether this request started the run or joined a running one is only known afterwards
    # (two jobs can both see "none running" before either starts): a token in the start's memo
    # tells, since only the start that created the run leaves its memo there.
    token = uuid.uuid4().hex
    start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
        WORKFLOW_NAME,
        rollout,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo={START_TOKEN: token},
        static_summary=summary,
        static_details=details,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(CANARY_TARGET, canary.spec.target_ref.name),
                SearchAttributePair(CANARY_NAMESPACE, canary.namespace),
                SearchAttributePair(CANARY_CLUSTER, rollout.cluster),
                SearchAttributePair(CANARY_PHASE, Phase.INITIALIZING.value),
                SearchAttributePair(CANARY_WEIGHT, 0),
                SearchAttributePair(CANARY_STRATEGY, canary.spec.analysis.strategy.value),
                *(
                    [SearchAttributePair(CANARY_REVISION, rollout.revision)]
                    if rollout.revision
                    else []
                ),
            ]
        ),
    )
    try:
        await client.start_update_with_start_workflow(
            "new_revision",
            revision_request,
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            rpc_timeout=accept_timeout,
        )
    except WorkflowUpdateFailedError as err:
        raise RequestRefusedError(f"the rollout refused the new revision: {_cause(err)}") from err
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        raise UnreachableError(
            f"rollout {workflow_id} is waiting for a worker: none took it within "
            f"{accept_timeout.total_seconds():g}s. Is `coalmine worker` running on task queue "
            f"{task_queue!r} of this namespace?"
        ) from err
    except RPCError as err:
        raise _rpc_error(err, workflow_id) from err
    handle = client.get_workflow_handle((await start.workflow_handle()).id)
    description = await handle.describe()
    started_here = await description.memo_value(START_TOKEN, None) == token
    return Started(handle=handle, existing=not started_here)


def _revision_pair(revision: str | None) -> list[SearchAttributePair[str]]:
    return [SearchAttributePair(CANARY_REVISION, revision)] if revision else []


async def _run_state(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """The status of the latest run, None when no rollout has this ID."""
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise _rpc_error(err, workflow_id) from err
    return desc.status


async def fetch_status(client: Client, workflow_id: str) -> RolloutStatus:
    """The rollout's status: its ``status`` query, or for a closed run without a worker to
    answer, what visibility and its result or failure say."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        status: RolloutStatus = await handle.query(
            "status", result_type=RolloutStatus, rpc_timeout=QUERY_TIMEOUT
        )
        return status
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise RolloutNotFoundError(f"no rollout {workflow_id}") from err
    except WorkflowQueryFailedError:
        pass
    return await _status_from_visibility(handle)


async def _status_from_visibility(handle: WorkflowHandle[Any, Any]) -> RolloutStatus:
    desc = await handle.describe()
    attrs = desc.typed_search_attributes
    _, cluster, namespace, name = ([*handle.id.split("/"), "", "", "", ""])[:4]
    phase = attrs.get(CANARY_PHASE) or Phase.INITIALIZING.value
    message = ""
    if desc.status == WorkflowExecutionStatus.FAILED:
        phase, message = Phase.FAILED.value, await _failure_message(handle)
    return RolloutStatus(
        name=name,
        namespace=namespace,
        cluster=cluster,
        phase=Phase(phase),
        canary_weight=attrs.get(CANARY_WEIGHT) or 0,
        revision=attrs.get(CANARY_REVISION),
        last_transition_time=desc.close_time or desc.start_time,
        message=message,
    )


async def _failure_message(handle: WorkflowHandle[Any, Any]) -> str:
    try:
        await handle.result(follow_runs=False)
    except Exception as err:  # any failure is described; none is fatal to a status read
        return describe_failure(err)
    return ""


def describe_failure(err: BaseException) -> str:
    """The innermost failure message: the ``RolloutFailed`` reason, not 'Workflow failed'."""
    cause: BaseException | None = err
    message = str(err)
    while cause is not None:
        if isinstance(cause, FailureError):
            message = cause.message
        if isinstance(cause, ApplicationError):
            return cause.message
        cause = cause.__cause__
    return message


async def send_request(
    client: Client, workflow_id: str, update: str, request: OperatorRequest
) -> RolloutStatus | None:
    """Send an operator update; the validator's refusal becomes a ``RequestRefusedError``."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        result = await handle.execute_update(update, request)
    except WorkflowUpdateFailedError as err:
        raise RequestRefusedError(f"{update} refused: {_cause(err)}") from err
    except RPCError as err:
        state = await _run_state(client, workflow_id)
        if err.status == RPCStatusCode.NOT_FOUND and state is not None:
            raise RequestRefusedError(
                f"{update} refused: rollout {workflow_id} has already ended "
                f"({state.name.lower()}): nothing to {update}"
            ) from err
        raise _rpc_error(err, workflow_id) from err
    return result if isinstance(result, RolloutStatus) else None


async def last_input(client: Client, workflow_id: str) -> tuple[RolloutInput, str]:
    """The input of the last run of a closed rollout, from its history, and that run's status."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as err:
        raise _rpc_error(err, workflow_id) from err
    if desc.status == WorkflowExecutionStatus.RUNNING:
        raise BadInputError(
            f"rollout {workflow_id} is still running: abort it first, or start a new revision"
        )
    run = client.get_workflow_handle(workflow_id, run_id=desc.run_id)
    async for event in run.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            (value,) = await client.data_converter.decode(payloads, [RolloutInput])
            status = desc.status.name if desc.status else "UNKNOWN"
            return value, status
    raise RolloutNotFoundError(f"rollout {workflow_id}: its history has no start event")


@dataclass(frozen=True)
class ListedRollout:
    """One row of ``coalmine rollout list``."""

    workflow_id: str
    namespace: str
    name: str
    status: str
    weight: int
    last_transition_time: datetime | None
    revision: str | None
    strategy: str | None = None
    """None for rollouts started before the strategy was recorded."""


def list_query(*, namespace: str | None, phase: str | None, strategy: str | None = None) -> str:
    """The visibility query for rollouts, e.g. ``… AND CanaryNamespace = 'test'``."""
    clauses = [f"WorkflowType = '{WORKFLOW_NAME}'"]
    if namespace:
        clauses.append(f"{CANARY_NAMESPACE.name} = '{_quote(namespace)}'")
    if phase:
        clauses.append(f"{CANARY_PHASE.name} = '{_quote(phase)}'")
    if strategy:
        clauses.append(f"{CANARY_STRATEGY.name} = '{_quote(strategy)}'")
    return " AND ".join(clauses)


async def list_rollouts(
    client: Client,
    *,
    namespace: str | None,
    phase: str | None,
    strategy: str | None = None,
    limit: int = 1000,
) -> list[ListedRollout]:
    """The latest run of every rollout matching the filters, newest first.

    Visibility returns every run that matches, older ones too: a rollout that failed and was
    then retried successfully has a Failed run. Only the latest run of each ID is its current
    state, so with a phase filter each candidate is checked against its latest run.
    """
    rows: dict[str, ListedRollout] = {}
    latest: dict[str, str] = {}
    query = list_query(namespace=namespace, phase=phase, strategy=strategy)
    try:
        async for execution in client.list_workflows(query, limit=limit):
            if execution.id not in rows:  # newest runs come first
                rows[execution.id] = _row(execution)
                latest[execution.id] = execution.run_id
        if phase:
            current = await asyncio.gather(*(_latest_run(client, wid) for wid in rows))
            rows = {
                wid: row
                for (wid, row), run in zip(rows.items(), current, strict=True)
                if run == latest[wid]
            }
    except RPCError as err:
        raise BadInputError(f"cannot list rollouts ({query}): {err.message}{_SETUP_HINT}") from err
    running = [r for r in rows.values() if r.status not in _CLOSED_PHASES]
    weights = await asyncio.gather(*(_live_weight(client, r) for r in running))
    live = {
        r.workflow_id: dataclasses.replace(r, weight=w)
        for r, w in zip(running, weights, strict=True)
    }
    return [live.get(wid, row) for wid, row in rows.items()]


_CLOSED_PHASES = (Phase.SUCCEEDED, Phase.FAILED, "Terminated", "Timed_Out", "Canceled")


async def _live_weight(client: Client, row: ListedRollout) -> int:
    """A running rollout's weight from its status query: rollouts upsert ``CanaryWeight`` with
    their phase changes only (an upsert per step would be a billed action), so the search
    attribute is the weight of the last phase change."""
    try:
        status: RolloutStatus = await client.get_workflow_handle(row.workflow_id).query(
            "status", result_type=RolloutStatus, rpc_timeout=QUERY_TIMEOUT
        )
    except (RPCError, WorkflowQueryFailedError):
        return row.weight  # no worker to answer: the last weight recorded
    return status.canary_weight


async def _latest_run(client: Client, workflow_id: str) -> str | None:
    return (await client.get_workflow_handle(workflow_id).describe()).run_id


def _row(execution: WorkflowExecution) -> ListedRollout:
    attrs = execution.typed_search_attributes
    status = attrs.get(CANARY_PHASE) or ""
    closed = execution.status not in (None, WorkflowExecutionStatus.RUNNING)
    if closed and status not in (Phase.SUCCEEDED, Phase.FAILED):
        # Terminated or timed out: no final phase was recorded, say what happened.
        status = execution.status.name.title() if execution.status else "Unknown"
    return ListedRollout(
        workflow_id=execution.id,
        namespace=attrs.get(CANARY_NAMESPACE) or "",
        name=execution.id.rsplit("/", 1)[-1],
        status=status,
        weight=attrs.get(CANARY_WEIGHT) or 0,
        last_transition_time=execution.close_time or execution.start_time,
        revision=attrs.get(CANARY_REVISION),
        strategy=attrs.get(CANARY_STRATEGY),
    )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _cause(err: WorkflowUpdateFailedError) -> str:
    return describe_failure(err.cause) if err.__cause__ else str(err)


def _rpc_error(err: RPCError, workflow_id: str) -> Exception:
    if err.status == RPCStatusCode.NOT_FOUND:
        return RolloutNotFoundError(f"no rollout {workflow_id}")
    if "search attribute" in err.message.lower():
        return BadInputError(
            f"{err.message}: register the rollout search attributes with `coalmine temporal setup`"
        )
    return err
