"""Two CI jobs start rollouts of the same target at once, with different images.

``rollout start`` is one update-with-start (``USE_EXISTING``): the first request starts the
workflow, the other hands its revision to that run, which restarts its analysis with it
(Flagger's rule). So there is one run for the target, and the primary ends with the image the
target ends with — the later one.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from activities.kubernetes.resources import Resources
from activities.kubernetes.revision import read_revision
from tests.faults.conftest import (
    COALMINE,
    IMAGE,
    FaultStack,
    canary_doc,
    canary_yaml,
    closed,
    initialize,
    make_app,
    status_of,
    wid_of,
)
from workflows.model import NewRevisionRequest, Phase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


async def _runs(temporal: Client, wid: str) -> list[tuple[str, str]]:
    """(run id, status) of every run of the workflow ID, newest first."""
    query = f"WorkflowId = '{wid}'"
    return [
        (w.run_id, w.status.name if w.status else "?") async for w in temporal.list_workflows(query)
    ]


async def test_two_jobs_at_once_give_one_rollout_and_the_later_image_wins(
    stack: FaultStack, temporal: Client, admin_client: Any, tmp_path: Path
) -> None:
    app = make_app(admin_client, prefix="ci-race")
    doc = canary_doc(app.namespace, stepWeight=10, maxWeight=40)
    await initialize(temporal, stack, doc)
    wid = wid_of(app)
    init_runs = await _runs(temporal, wid)
    canary = tmp_path / "canary.yaml"
    canary.write_text(canary_yaml(doc))

    images = [f"{IMAGE}:7.0.1", f"{IMAGE}:7.0.2"]
    jobs = [
        await asyncio.create_subprocess_exec(
            COALMINE,
            "rollout",
            "start",
            "-f",
            str(canary),
            "--image",
            f"podinfod={image}",
            "--reason",
            f"CI job {n}",
            env=stack.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for n, image in enumerate(images)
    ]
    try:
        done = await asyncio.wait_for(asyncio.gather(*(job.communicate() for job in jobs)), 60)
    finally:
        for job in jobs:
            if job.returncode is None:
                job.kill()
                await job.wait()
    outputs = [out.decode() for out, _ in done]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert sum("rollout started" in out for out in outputs) == 1, outputs
    assert sum("new revision handed to the running rollout" in out for out in outputs) == 1

    deadline = time.monotonic() + 60
    while True:
        runs = [r for r in await _runs(temporal, wid) if r not in init_runs]
        running = [run for run, state in runs if state == "RUNNING"]
        assert len(running) <= 1, runs
        if runs and not running:
            break
        assert time.monotonic() < deadline, runs
        await asyncio.sleep(0.3)
    new_runs = [r for r in await _runs(temporal, wid) if r not in init_runs]
    assert len(new_runs) == 1, new_runs  # one rollout for both jobs

    handle = temporal.get_workflow_handle(wid)
    status = await status_of(handle)
    later = app.image()  # the image the target ended with: the last job's write
    assert later in images
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert app.image("podinfo-primary") == later
    assert status.revision == read_revision(Resources(admin_client), app.namespace, "podinfo")


async def test_a_stale_revision_arriving_late_does_not_undo_the_later_image(
    stack: FaultStack, temporal: Client, admin_client: Any, tmp_path: Path
) -> None:
    """The interleaving two racing jobs can produce, made deterministic: job A sets its image
    and computes its revision; job B sets its image and starts the rollout; then job A's
    request arrives with the revision of an image the target no longer has."""
    app = make_app(admin_client, prefix="ci-stale")
    doc = canary_doc(app.namespace, stepWeight=10, maxWeight=40)
    await initialize(temporal, stack, doc)
    canary = tmp_path / "canary.yaml"
    canary.write_text(canary_yaml(doc))
    res = Resources(admin_client)

    app.release("7.0.1")  # job A's `set image`
    stale = read_revision(res, app.namespace, "podinfo")
    assert stale is not None
    later = f"{IMAGE}:7.0.2"
    job_b = await asyncio.to_thread(
        subprocess.run,
        [COALMINE, "rollout", "start", "-f", str(canary), "--image", f"podinfod={later}"],
        env=stack.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert job_b.returncode == 0, job_b.stdout + job_b.stderr
    handle = temporal.get_workflow_handle(wid_of(app))
    # Job A's request, late: what `rollout start` sends to a running rollout.
    await handle.execute_update(
        "new_revision", NewRevisionRequest(revision=stale, identity="CI job A", reason="late")
    )
    await closed(handle, within=90)
    status = await status_of(handle)
    assert app.image() == later
    assert status.phase == Phase.SUCCEEDED, status.message
    assert app.image("podinfo-primary") == later
