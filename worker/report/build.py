"""``coalmine rollout report``: fetch the history (and the live status), query Prometheus, write.

The history is the source: it is complete for a closed run and up to date for a running one.
A rollout that continued as new is read across its runs (oldest first, up to `MAX_RUNS`). The
``status`` query, when a worker answers it, only completes the events (full messages and
kinds; the history keeps each as a summary cut at 120 characters). Prometheus is asked last and
may be absent: the report then says so instead of failing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from activities.analysis.metrics.credentials import from_environment
from activities.errors import InvalidSpec
from worker.errors import BadInputError, RolloutNotFoundError, UnreachableError
from worker.report.facts import Report
from worker.report.html import render_html
from worker.report.model import Event, RolloutTimeline
from worker.report.png import render_png
from worker.report.series import Comparisons, compare
from worker.report.timeline import timeline_of
from worker.rollout_ops import QUERY_TIMEOUT
from worker.settings import TemporalSettings
from workflows.model import RolloutStatus

MAX_RUNS = 20
"""Runs of a continue-as-new chain read at most (a rollout continues every ~10,000 events)."""

FORMATS = (".html", ".png")


async def fetch_histories(
    client: Client, workflow_id: str, run_id: str | None = None
) -> list[WorkflowHistory]:
    """The run's history and those of the runs it continued, oldest first."""
    histories: list[WorkflowHistory] = []
    current: str | None = run_id
    while len(histories) < MAX_RUNS:
        handle = client.get_workflow_handle(workflow_id, run_id=current)
        try:
            history = await handle.fetch_history()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and not histories:
                run = f" run {run_id}" if run_id else ""
                raise RolloutNotFoundError(f"no rollout {workflow_id}{run}") from err
            if err.status == RPCStatusCode.NOT_FOUND:
                break  # an older run past the namespace's retention: report what is left
            raise UnreachableError(f"cannot read the history of {workflow_id}: {err}") from err
        histories.append(history)
        current = _continued_from(history)
        if not current:
            break
    return list(reversed(histories))


def _continued_from(history: WorkflowHistory) -> str | None:
    for event in history.events[:1]:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            previous = event.workflow_execution_started_event_attributes.continued_execution_run_id
            return previous or None
    return None


async def live_events(client: Client, workflow_id: str, run_id: str) -> list[Event] | None:
    """The status query's events (complete messages), None when no worker answers."""
    try:
        status = await client.get_workflow_handle(workflow_id, run_id=run_id).query(
            "status", result_type=RolloutStatus, rpc_timeout=QUERY_TIMEOUT
        )
    except Exception:  # the report stands on the history; this only completes it
        return None
    return [Event(e.time, e.type, e.reason, e.message) for e in status.events]


def merge_events(timeline: RolloutTimeline, live: list[Event] | None) -> RolloutTimeline:
    """Each history event completed by the status's copy of it (same message start, in order)."""
    if not live:
        return timeline
    remaining = list(live)
    merged: list[Event] = []
    for event in timeline.events:
        match = next((e for e in remaining if e.message.startswith(event.message)), None)
        if match is None:
            merged.append(event)
            continue
        remaining.remove(match)
        merged.append(Event(event.time, match.type, match.reason, match.message))
    return dataclasses.replace(timeline, events=tuple(merged))


async def build_report(
    client: Client,
    settings: TemporalSettings,
    *,
    workflow_id: str,
    run_id: str | None,
    prometheus_url: str | None,
    now: datetime | None = None,
) -> Report:
    """Everything the report shows, read from Temporal and Prometheus."""
    histories = await fetch_histories(client, workflow_id, run_id)
    timeline = timeline_of(histories)
    timeline = merge_events(timeline, await live_events(client, workflow_id, timeline.run_id))
    moment = now or datetime.now(UTC)
    try:
        credentials = from_environment()
    except InvalidSpec as err:
        raise BadInputError(str(err)) from err
    # The Prometheus client blocks: keep it off the event loop.
    comparisons: Comparisons = await asyncio.to_thread(
        compare, timeline, prometheus_url=prometheus_url, now=moment, credentials=credentials
    )
    url = f"{settings.workflow_url(workflow_id)}/{timeline.run_id}/history"
    return Report(timeline=timeline, comparisons=comparisons, url=url, generated=moment)


def check_output(path: Path) -> Path:
    """The file to write, refused before anything is fetched when its kind is unknown."""
    if path.suffix.lower() not in FORMATS:
        raise BadInputError(
            f"--output {path}: write the report as .html (the page) or .png (the picture)"
        )
    if not path.parent.exists():
        raise BadInputError(f"--output {path}: directory {path.parent} does not exist")
    return path


def write_report(report: Report, path: Path) -> None:
    now = report.generated or datetime.now(UTC)
    if path.suffix.lower() == ".png":
        path.write_bytes(render_png(report, now))
    else:
        path.write_text(render_html(report, now), encoding="utf-8")
