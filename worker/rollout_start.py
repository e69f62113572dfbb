"""``coalmine rollout start`` and ``retry``: from a Canary file (or the last run) to a rollout.

The order is chosen so a refusal changes nothing: the spec is validated, Temporal is reached,
the target is checked, and only then are images patched and the rollout started.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from temporalio.client import Client

from activities.analysis.alerts import report_command
from worker.canary_files import Placement, read_canary_file
from worker.errors import EXIT_OK, RequestRefusedError
from worker.follow import follow
from worker.rollout_ops import (
    ACCEPT_TIMEOUT,
    Started,
    fetch_status,
    last_input,
    start_rollout,
)
from worker.rollout_view import RolloutFollower
from worker.settings import KubernetesSettings, TemporalSettings
from worker.target import Target, parse_images, prepare_target, short_image
from worker.temporal import connect
from workflows.model import NewRevisionRequest, RolloutInput, workflow_id
from workflows.spec import Canary


@dataclass(frozen=True)
class StartRequest:
    """Everything ``rollout start`` was asked."""

    file: Path
    images: list[str]
    kubernetes: KubernetesSettings
    identity: str
    reason: str | None
    wait: bool
    json_output: bool
    start_timeout: timedelta = ACCEPT_TIMEOUT
    namespace: str | None = None
    """``-n``: where a Canary naming no namespace goes (else the kubeconfig context's)."""


def summary_of(canary: Canary, image: str | None) -> str:
    """The static summary in the Web UI's list: ``podinfo.test → podinfo:6.5.1``."""
    head = f"{canary.name}.{canary.namespace}"
    return f"{head} → {short_image(image)}" if image else head


def details_of(rollout: RolloutInput, images: dict[str, str]) -> str:
    """The static details: the spec in brief, as markdown."""
    canary, analysis = rollout.canary, rollout.canary.spec.analysis
    steps = (
        f"weights {', '.join(map(str, analysis.step_weights))}"
        if analysis.step_weights
        else f"step {analysis.step_weight}% up to {analysis.effective_max_weight}%"
    )
    metrics = ", ".join(
        _metric_brief(m.name, m.threshold_range, m.threshold) for m in analysis.metrics
    )
    lines = [
        f"**Target** Deployment {canary.namespace}/{canary.spec.target_ref.name} "
        f"(cluster {rollout.cluster}), service {canary.service_name}:{canary.spec.service.port}",
        f"**Images** {', '.join(f'{c}={i}' for c, i in images.items()) or '-'}",
        f"**Revision** {rollout.revision or '-'}",
        f"**Analysis** every {analysis.interval}, {steps}, threshold {analysis.threshold}"
        + (" (skipAnalysis)" if canary.spec.skip_analysis else ""),
        f"**Metrics** {metrics or '-'}",
        f"**Webhooks** {', '.join(f'{w.name} ({w.type})' for w in analysis.webhooks) or '-'}",
        f"**Requested by** {rollout.requested_by or '-'}"
        + (f" — {rollout.reason}" if rollout.reason else ""),
    ]
    return "\n\n".join(lines)


def _metric_brief(name: str, bounds: object, threshold: float | None) -> str:
    low = getattr(bounds, "min", None)
    high = getattr(bounds, "max", None)
    parts = [f"≥ {low:g}" if low is not None else "", f"≤ {high:g}" if high is not None else ""]
    if threshold is not None and not any(parts):
        parts = [f"threshold {threshold:g}"]
    return f"{name} {' '.join(p for p in parts if p)}".strip()


async def _prepare(canary: Canary, settings: KubernetesSettings, images: dict[str, str]) -> Target:
    # The Kubernetes client blocks: keep it off the event loop that talks to Temporal.
    return await asyncio.to_thread(prepare_target, canary, settings, images)


async def _start(
    client: Client,
    temporal: TemporalSettings,
    rollout: RolloutInput,
    summary: str,
    images: dict[str, str],
    *,
    accept_timeout: timedelta = ACCEPT_TIMEOUT,
) -> Started:
    revision = rollout.revision or ""
    wid = workflow_id(
        cluster=rollout.cluster, namespace=rollout.canary.namespace, name=rollout.canary.name
    )
    return await start_rollout(
        client,
        workflow_id=wid,
        task_queue=temporal.task_queue,
        rollout=rollout,
        summary=summary,
        details=details_of(rollout, images),
        revision_request=NewRevisionRequest(
            revision=revision, identity=rollout.requested_by or "unknown", reason=rollout.reason
        ),
        accept_timeout=accept_timeout,
    )


async def _report_and_wait(
    client: Client,
    temporal: TemporalSettings,
    started: Started,
    rollout: RolloutInput,
    *,
    wait: bool,
    json_output: bool,
    console: Console,
) -> int:
    wid = started.handle.id
    url = temporal.workflow_url(wid)
    canary = rollout.canary
    document: dict[str, Any] = {
        "workflowId": wid,
        "revision": rollout.revision,
        "existing": started.existing,
        "url": url,
    }
    if json_output and not wait:
        console.print_json(json.dumps(document))
        return EXIT_OK
    # With -o json the progress goes to stderr so stdout holds only the final JSON document.
    log = Console(stderr=True, highlight=False, soft_wrap=True) if json_output else console
    verb = "new revision handed to the running rollout" if started.existing else "rollout started"
    log.print(
        f"{verb}: {canary.name}.{canary.namespace} revision {rollout.revision} ({wid})",
        markup=False,
    )
    log.print(f"Web UI: {url}", markup=False)
    if not wait:
        return EXIT_OK
    with RolloutFollower(log) as view:
        outcome = await follow(client, wid, view)
    word = "promoted" if outcome.exit_code == EXIT_OK else "rolled back / failed"
    log.print(
        f"rollout {canary.name}.{canary.namespace} {word}: {outcome.phase.value}"
        + (f" — {outcome.message}" if outcome.message else ""),
        markup=False,
    )
    # Where to see why (or how it went): the report draws this rollout from its history.
    command = report_command(canary.name, canary.namespace, rollout.cluster)
    log.print(f"report: {command} -o report.html (or -o report.png)", markup=False)
    if json_output:
        final = await fetch_status(client, wid)
        document["status"] = final.model_dump(mode="json", by_alias=True)
        console.print_json(json.dumps(document))
    return outcome.exit_code


async def start_command(request: StartRequest, temporal: TemporalSettings, console: Console) -> int:
    """Validate, prepare the target, start (or hand over the new revision), maybe wait."""
    placement = Placement.resolve(request.namespace, request.kubernetes)
    read = read_canary_file(request.file, placement)
    canary = read.canary
    for note in read.notes:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"note: {request.file}: {note}", markup=False
        )
    images = parse_images(request.images)
    client = await connect(temporal, identity=request.identity)
    target = await _prepare(canary, request.kubernetes, images)
    rollout = RolloutInput(
        canary=canary,
        cluster=request.kubernetes.cluster,
        revision=target.revision,
        requested_by=request.identity,
        reason=request.reason,
    )
    shown = next(iter(images.values()), None) or next(iter(target.images.values()), None)
    started = await _start(
        client,
        temporal,
        rollout,
        summary_of(canary, shown),
        target.images,
        accept_timeout=request.start_timeout,
    )
    return await _report_and_wait(
        client,
        temporal,
        started,
        rollout,
        wait=request.wait,
        json_output=request.json_output,
        console=console,
    )


async def retry_command(
    temporal: TemporalSettings,
    *,
    workflow_id_: str,
    identity: str,
    reason: str | None,
    wait: bool,
    json_output: bool,
    console: Console,
) -> int:
    """Run the last closed run's canary and revision again (no new commit needed)."""
    client = await connect(temporal, identity=identity)
    previous, how = await last_input(client, workflow_id_)
    if how == "COMPLETED":
        raise RequestRefusedError(
            f"the last run of {workflow_id_} was promoted (revision {previous.revision}): "
            "nothing to retry"
        )
    # A fresh start: no status carried over (that is only for continue-as-new).
    rollout = RolloutInput(
        canary=previous.canary,
        cluster=previous.cluster,
        revision=previous.revision,
        requested_by=identity,
        reason=reason or f"retry of the last run ({how.lower()})",
    )
    summary = f"{summary_of(rollout.canary, None)} (retry {rollout.revision})"
    started = await _start(client, temporal, rollout, summary, {})
    return await _report_and_wait(
        client, temporal, started, rollout, wait=wait, json_output=json_output, console=console
    )
