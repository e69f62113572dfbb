"""The real ``coalmine`` command as a CI job runs it: a dev server, a worker and the sandbox.

Every command is a separate process; the worker is one too. Analysis intervals are 2 s so a
whole promotion takes about ten seconds.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.e2e.conftest import COALMINE, IMAGE, App, Coalmine, make_app, stop_process
from tests.ports import free_port
from workflows.model import RolloutStatus, workflow_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _out(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _initialize(coalmine: Coalmine, app: App) -> None:
    """The first rollout of a target only creates the primary (Flagger's initialization)."""
    proc = coalmine.rollout("start", "-f", str(app.canary), "--wait")
    assert proc.returncode == 0, _out(proc)
    assert "Initialization done" in proc.stdout


async def _client(coalmine: Coalmine) -> Client:
    return await Client.connect(coalmine.temporal.address, data_converter=pydantic_data_converter)


def test_setup_registered_the_search_attributes(search_attributes_registered: str) -> None:
    assert "added search attribute CanaryPhase" in search_attributes_registered
    assert "added search attribute CanaryWeight" in search_attributes_registered


def test_start_wait_promotes_then_rolls_back(coalmine: Coalmine, app: App) -> None:
    _initialize(coalmine, app)

    proc = coalmine.rollout(
        "start", "-f", str(app.canary), "--image", f"podinfod={IMAGE}:6.5.1", "--wait",
        "--reason", "release 6.5.1",
    )  # fmt: skip
    assert proc.returncode == 0, _out(proc)
    # A CI log: one line per change and each event as Flagger words it, then the outcome.
    assert f"Advance podinfo.{app.namespace} canary weight 25" in proc.stdout
    assert "Progressing weight=50" in proc.stdout
    assert "request-success-rate=" in proc.stdout
    assert "Promotion completed!" in proc.stdout
    wid = workflow_id(cluster="default", namespace=app.namespace, name="podinfo")
    ui = f"http://127.0.0.1:{coalmine.temporal.ui_port}/namespaces/default/workflows/"
    assert ui + wid.replace("/", "%2F") in proc.stdout
    assert app.image("podinfo-primary") == f"{IMAGE}:6.5.1"

    # A bad release: every request fails, the rollout rolls back, CI sees exit 1.
    app.set_env(FAULT_ERROR_RATE="1")
    proc = coalmine.rollout("start", "-f", str(app.canary), "--wait")
    assert proc.returncode == 1, _out(proc)
    assert "Rolling back" in proc.stdout
    assert app.deployment().spec.replicas == 0  # canary scaled to zero
    assert app.image("podinfo-primary") == f"{IMAGE}:6.5.1"  # primary untouched

    status = coalmine.status("podinfo", app.namespace)
    assert status["phase"] == "Failed"
    assert status["canaryWeight"] == 0
    assert status["failedChecks"] >= 3
    assert "success rate" in status["failedCheckHistory"][-1]["message"]
    for name in ("iterations", "lastTransitionTime", "metrics", "actions"):
        assert name in status

    _summary_and_details(coalmine, wid, f"podinfo.{app.namespace} → podinfo:6.5.1")
    _listed_in_phase(coalmine, app.namespace, wid, "Failed")
    _activity_summaries(coalmine, wid)
    _weight_scraped_by_prometheus(coalmine, app.namespace)


def _summary_and_details(coalmine: Coalmine, wid: str, summary: str) -> None:
    async def describe() -> tuple[str | None, str | None]:
        client = await _client(coalmine)
        description = await client.get_workflow_handle(wid).describe()
        return await description.static_summary(), await description.static_details()

    found_summary, details = asyncio.run(describe())
    assert found_summary == summary
    assert details is not None
    assert "**Analysis** every 2s, step 25% up to 50%, threshold 3" in details
    assert "request-success-rate ≥ 99" in details


def _listed_in_phase(coalmine: Coalmine, namespace: str, wid: str, phase: str) -> None:
    proc = coalmine.rollout("list", "-n", namespace, "--phase", phase, "-o", "json")
    assert proc.returncode == 0, _out(proc)
    rows = json.loads(proc.stdout)
    assert [(r["workflowId"], r["phase"]) for r in rows] == [(wid, phase)]
    proc = coalmine.rollout("list", "-n", namespace, "--phase", "Succeeded", "-o", "json")
    assert json.loads(proc.stdout) == []

    async def visibility() -> list[str]:
        client = await _client(coalmine)
        query = (
            f"WorkflowType = 'CanaryRollout' AND CanaryNamespace = '{namespace}' "
            f"AND CanaryPhase = '{phase}'"
        )
        return [w.id async for w in client.list_workflows(query)]

    assert wid in asyncio.run(visibility())


def _activity_summaries(coalmine: Coalmine, wid: str) -> None:
    async def summaries() -> list[str]:
        client = await _client(coalmine)
        found: list[str] = []
        async for event in client.get_workflow_handle(wid).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                (summary,) = await client.data_converter.decode(
                    [event.user_metadata.summary], [str]
                )
                found.append(summary)
        return found

    found = asyncio.run(summaries())
    assert "set weights primary 100 / canary 0" in found, found  # the rollback
    # Every check of a step in one activity, each named (with its bound) in its summary.
    step = "check load-test, request-success-rate ≥ 99"
    assert any(s.startswith(step) for s in found), found


def _weight_scraped_by_prometheus(coalmine: Coalmine, namespace: str) -> None:
    """The sandbox's Prometheus scraped the worker's endpoint while the weight moved."""
    url = coalmine.sandbox.prometheus_url
    query = f'max_over_time(coalmine_canary_weight{{namespace="{namespace}"}}[5m])'
    deadline = time.monotonic() + 20
    seen: list[Any] = []
    while time.monotonic() < deadline:
        reply = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()
        seen = reply["data"]["result"]
        if seen and float(seen[0]["value"][1]) >= 50:
            break
        time.sleep(1)
    assert seen, "Prometheus has no coalmine_canary_weight"
    assert float(seen[0]["value"][1]) >= 50
    now = httpx.get(
        f"{url}/api/v1/query",
        params={"query": f'coalmine_canary_weight{{namespace="{namespace}"}}'},
        timeout=5,
    ).json()["data"]["result"]
    assert float(now[0]["value"][1]) == 0  # back to the primary after the rollback


def test_bad_input_exits_2_and_changes_nothing(
    coalmine: Coalmine, app: App, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(app.canary.read_text().replace("stepWeight: 25", "stepWeight: 80"))
    proc = coalmine.rollout("start", "-f", str(bad), "--image", f"podinfod={IMAGE}:9.9.9")
    assert proc.returncode == 2, _out(proc)
    assert "stepWeight" in proc.stderr
    assert app.image() == f"{IMAGE}:6.5.0"  # the image was not set

    missing = tmp_path / "missing.yaml"
    missing.write_text(app.canary.read_text().replace("name: podinfo}", "name: nothere}"))
    proc = coalmine.rollout("start", "-f", str(missing))
    assert proc.returncode == 2, _out(proc)
    assert f"{app.namespace}/nothere not found" in proc.stderr

    proc = coalmine.rollout("start", "-f", str(app.canary), "--image", "nocontainer=x:1")
    assert proc.returncode == 2, _out(proc)
    assert "no container nocontainer" in proc.stderr

    proc = coalmine.rollout("status", "podinfo", "-n", app.namespace)
    assert proc.returncode == 1, _out(proc)  # nothing was started
    assert "no rollout" in proc.stderr

    proc = coalmine.run("rollout", "--address", "127.0.0.1:1", "start", "-f", str(app.canary))
    assert proc.returncode == 3, _out(proc)

    # No worker polls the task queue: exit 3 naming it, not a silent hang in CI.
    proc = coalmine.run(
        "rollout", "--task-queue", "nobody-polls", "start", "-f", str(app.canary),
        "--start-timeout", "2",
    )  # fmt: skip
    assert proc.returncode == 3, _out(proc)
    assert "'nobody-polls'" in proc.stderr


def test_operators_steer_a_running_rollout(coalmine: Coalmine, kube: Any, tmp_path: Path) -> None:
    app = make_app(kube, tmp_path, step=5)  # ten steps: time to act while it runs
    _initialize(coalmine, app)
    waiting = coalmine.spawn(
        "rollout", "start", "-f", str(app.canary), "--image", f"podinfod={IMAGE}:6.6.0", "--wait"
    )
    try:
        coalmine.wait_for("podinfo", app.namespace, phase="Progressing")
        wid = workflow_id(cluster="default", namespace=app.namespace, name="podinfo")
        _until_weight(coalmine, wid, 5)  # some traffic on the canary, many steps to go
        proc = coalmine.rollout(
            "pause", "podinfo", "-n", app.namespace, "--identity", "ana@laptop", "--reason", "look"
        )
        assert proc.returncode == 0, _out(proc)
        paused = coalmine.status("podinfo", app.namespace)
        assert paused["paused"] is True
        # The list shows the live weight (the search attribute has the last phase change's).
        proc = coalmine.rollout("list", "-n", app.namespace, "-o", "json")
        assert [r["canaryWeight"] for r in json.loads(proc.stdout)] == [paused["canaryWeight"]]
        proc = coalmine.rollout("pause", "podinfo", "-n", app.namespace)
        assert proc.returncode == 1, _out(proc)  # the validator refuses a second pause
        assert "already paused" in proc.stderr
        proc = coalmine.rollout("resume", "podinfo", "-n", app.namespace, "--identity", "bo@desk")
        assert proc.returncode == 0, _out(proc)

        proc = coalmine.rollout(
            "abort", "podinfo", "-n", app.namespace,
            "--reason", "latency spike on checkout", "--identity", "ana@laptop",
        )  # fmt: skip
        assert proc.returncode == 0, _out(proc)
        out, _ = waiting.communicate(timeout=60)
        assert waiting.returncode == 1, out
        assert "latency spike on checkout" in out
    finally:
        if waiting.poll() is None:
            waiting.kill()

    status = coalmine.status("podinfo", app.namespace)
    actions = [(a["action"], a["identity"], a.get("reason")) for a in status["actions"]]
    assert ("pause", "ana@laptop", "look") in actions
    assert ("resume", "bo@desk", None) in actions
    assert ("abort", "ana@laptop", "latency spike on checkout") in actions
    history = _history_bytes(coalmine, wid)
    assert b"latency spike on checkout" in history
    assert b"ana@laptop" in history

    # Retry the same revision without a new commit, and promote it at once from elsewhere.
    revision = status["revision"]
    retried = coalmine.spawn("rollout", "retry", "podinfo", "-n", app.namespace, "--wait")
    try:
        coalmine.wait_for("podinfo", app.namespace, phase="Progressing", revision=revision)
        proc = coalmine.rollout(
            "promote", "podinfo", "-n", app.namespace, "--full", "--identity", "release-manager"
        )
        assert proc.returncode == 0, _out(proc)
        out, _ = retried.communicate(timeout=60)
        assert retried.returncode == 0, out
    finally:
        if retried.poll() is None:
            retried.kill()
    status = coalmine.status("podinfo", app.namespace)
    assert status["phase"] == "Succeeded"
    assert ("promote-full", "release-manager") in [
        (a["action"], a["identity"]) for a in status["actions"]
    ]
    assert app.image("podinfo-primary") == f"{IMAGE}:6.6.0"


def _until_weight(coalmine: Coalmine, wid: str, weight: int) -> None:
    """Poll the rollout's status query (a client, not a process per poll) until the weight."""

    async def poll() -> None:
        client = await _client(coalmine)
        handle = client.get_workflow_handle(wid)
        deadline = time.monotonic() + 60
        while (await handle.query("status", result_type=RolloutStatus)).canary_weight < weight:
            assert time.monotonic() < deadline, f"the rollout never reached weight {weight}"
            await asyncio.sleep(0.05)

    asyncio.run(poll())


def _history_bytes(coalmine: Coalmine, wid: str) -> bytes:
    """Every event of the rollout's last run, serialized: payloads are plain JSON inside."""

    async def history() -> bytes:
        client = await _client(coalmine)
        events = [
            e.SerializeToString()
            async for e in client.get_workflow_handle(wid).fetch_history_events()
        ]
        return b"\n".join(events)

    return asyncio.run(history())


def test_worker_shuts_down_gracefully_on_sigterm(coalmine: Coalmine, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [COALMINE, "worker", "--metrics-port", str(free_port()), "--task-queue", "idle"],
            env=coalmine.worker_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while "worker polling" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    assert stop_process(proc, timeout=60) == 0, log.read_text()
    assert "worker stopped" in log.read_text()
