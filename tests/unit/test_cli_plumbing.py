"""The CLI's Temporal plumbing against a real dev server and the real rollout workflow.

The activities are the workflow tests' fakes (registered under the real names), so these tests
need no cluster: they check what the commands send and read — update-with-start, the status
query, visibility queries, updates with validators, history reads for retry — and the metrics
interceptor. The commands run through ``CliRunner`` on a thread while the worker runs on the
test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.workflow import UnfinishedSignalHandlersWarning, UnfinishedUpdateHandlersWarning
from typer.testing import CliRunner

from tests import canaries
from tests.workflows.fakes import ACTIVITIES, CLUSTERS, FakeCluster, failing
from worker.app import build_worker
from worker.cli import app
from worker.metrics import RolloutMetrics
from worker.rollout_ops import Started, fetch_status, start_rollout
from worker.settings import Settings, TemporalSettings, WorkerSettings
from workflows.model import NewRevisionRequest, Phase, RolloutInput, workflow_id
from workflows.spec import Canary

TASK_QUEUE = "coalmine-cli-plumbing"


def canary(name: str, **analysis: Any) -> Canary:
    spec_analysis: dict[str, Any] = {
        "interval": "1s",
        "threshold": 2,
        "maxWeight": 50,
        "stepWeight": 25,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}
        ],
    }
    spec_analysis.update(analysis)
    return canaries.canary(
        "plumbing", name=name, target=name, progress_deadline=None, analysis=spec_analysis
    )


@dataclass
class Cli:
    client: Client
    settings: TemporalSettings
    metrics: RolloutMetrics

    async def run(self, *args: str) -> tuple[int, str]:
        """``coalmine rollout <args>`` on a thread (it runs its own event loop)."""
        argv = [
            "rollout",
            "--address",
            self.settings.address,
            "--task-queue",
            TASK_QUEUE,
            *args,
        ]

        def invoke() -> tuple[int, str]:
            result = CliRunner().invoke(app, argv)
            return result.exit_code, result.output

        return await asyncio.to_thread(invoke)

    async def json(self, *args: str) -> Any:
        code, output = await self.run(*args, "-o", "json")
        assert code == 0, output
        return json.loads(output)

    async def start(self, name: str, cluster: FakeCluster, **analysis: Any) -> Started:
        return await start_on(self.client, TASK_QUEUE, name, cluster, **analysis)


async def start_on(
    client: Client, queue: str, name: str, cluster: FakeCluster, **analysis: Any
) -> Started:
    """Start a rollout of ``name`` as ``coalmine rollout start`` does (update-with-start)."""
    wid = workflow_id(cluster="default", namespace="plumbing", name=name)
    CLUSTERS[wid] = cluster
    rollout = RolloutInput(
        canary=canary(name, **analysis), revision=cluster.revision, requested_by="ci:test"
    )
    return await start_rollout(
        client,
        workflow_id=wid,
        task_queue=queue,
        rollout=rollout,
        summary=f"{name}.plumbing → {name}:2",
        details="details",
        revision_request=NewRevisionRequest(revision=cluster.revision, identity="ci:test"),
    )


@pytest.fixture
def no_unfinished_handlers() -> Iterator[None]:
    """A workflow that exits with handlers still running is a test error, not a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnfinishedUpdateHandlersWarning)
        warnings.simplefilter("always", UnfinishedSignalHandlersWarning)
        yield
    kinds = UnfinishedUpdateHandlersWarning | UnfinishedSignalHandlersWarning
    assert not [str(w.message) for w in caught if issubclass(w.category, kinds)]


@pytest.fixture
async def cli(
    dev_server_env: WorkflowEnvironment, no_unfinished_handlers: None
) -> AsyncIterator[Cli]:
    client = dev_server_env.client
    temporal = TemporalSettings(
        address=client.service_client.config.target_host, task_queue=TASK_QUEUE
    )
    settings = Settings(temporal=temporal, worker=WorkerSettings(metrics_port=0))
    metrics = RolloutMetrics()
    worker = build_worker(client, settings, api_client=None, metrics=metrics, activities=ACTIVITIES)
    async with worker:
        yield Cli(client, temporal, metrics)


async def test_promoted_rollout_watch_status_list(cli: Cli) -> None:
    started = await cli.start("promoted", FakeCluster())
    assert not started.existing
    description = await started.handle.describe()
    assert await description.static_summary() == "promoted.plumbing → promoted:2"

    code, output = await cli.run("watch", "promoted", "-n", "plumbing")
    assert code == 0, output
    # Not a terminal: one plain line per change, and the rollout's events as Flagger words them.
    assert "Progressing weight=25" in output
    assert "weight=50" in output
    assert "request-success-rate=99.5" in output
    assert "New revision detected! Scaling up promoted.plumbing" in output
    assert "Succeeded" in output
    assert "/namespaces/default/workflows/canary%2Fdefault%2Fplumbing%2Fpromoted" in output

    status = await cli.json("status", "promoted", "-n", "plumbing")
    assert status["phase"] == "Succeeded"
    for name in ("canaryWeight", "failedChecks", "iterations", "lastTransitionTime", "metrics"):
        assert name in status
    assert status["actions"][0]["identity"] == "ci:test"

    rows = await cli.json("list", "-n", "plumbing", "--phase", "Succeeded")
    assert any(r["name"] == "promoted" and r["phase"] == "Succeeded" for r in rows)
    # The start recorded the strategy as a search attribute: the list shows and filters by it.
    promoted = [r for r in rows if r["name"] == "promoted"]
    assert [r["strategy"] for r in promoted] == ["canary"]
    rows = await cli.json("list", "-n", "plumbing", "--strategy", "canary")
    assert "promoted" in [r["name"] for r in rows]
    rows = await cli.json("list", "-n", "plumbing", "--strategy", "blue-green")
    assert "promoted" not in [r["name"] for r in rows]
    code, table = await cli.run("list", "-n", "plumbing")
    assert "NAMESPACE" in table
    assert "LASTTRANSITIONTIME" in table
    assert "STRATEGY" in table

    m = cli.metrics.registry.get_sample_value
    labels = {"name": "promoted", "namespace": "plumbing"}
    assert m("coalmine_canary_promotions_total", labels) == 1
    assert m("coalmine_canary_status", labels) == 1
    assert m("coalmine_canary_metric_analysis", {**labels, "metric": "request-success-rate"})
    assert m("coalmine_canary_duration_seconds_count", labels) == 1


async def test_rolled_back_rollout_exits_1_and_retry_runs_it_again(cli: Cli) -> None:
    cluster = FakeCluster(metrics={"request-success-rate": [failing("request-success-rate")]})
    await cli.start("broken", cluster)
    code, output = await cli.run("watch", "broken", "-n", "plumbing")
    assert code == 1, output
    assert "failedChecks=" in output

    status = await cli.json("status", "broken", "-n", "plumbing")
    assert status["phase"] == "Failed"
    assert status["failedChecks"] >= 2
    assert status["failedCheckHistory"][0]["message"] == "success rate 69.17% < 99%"
    labels = {"name": "broken", "namespace": "plumbing"}
    assert cli.metrics.registry.get_sample_value("coalmine_canary_rollbacks_total", labels) == 1

    # Retry: the same canary and revision, read from the last run's history.
    cluster.metrics.clear()
    retried = await cli.json("retry", "broken", "-n", "plumbing", "--identity", "ana@laptop")
    assert retried["revision"] == cluster.revision
    code, output = await cli.run("watch", "broken", "-n", "plumbing")
    assert code == 0, output
    status = await cli.json("status", "broken", "-n", "plumbing")
    assert status["actions"][0]["identity"] == "ana@laptop"


async def test_operator_requests_record_who_and_why(cli: Cli) -> None:
    await cli.start("steered", FakeCluster(), maxWeight=100, stepWeight=5)
    await _wait_for_phase(cli, "steered", "Progressing")

    code, output = await cli.run("resume", "steered", "-n", "plumbing")
    assert code == 1, output  # the validator refuses: not paused
    assert "not paused" in output

    code, output = await cli.run(
        "pause", "steered", "-n", "plumbing", "--identity", "ana@laptop", "--reason", "lunch"
    )
    assert code == 0, output
    status = await cli.json("status", "steered", "-n", "plumbing")
    assert status["paused"] is True
    code, output = await cli.run("resume", "steered", "-n", "plumbing", "--identity", "bo@desk")
    assert code == 0, output

    code, output = await cli.run(
        "abort", "steered", "-n", "plumbing", "--reason", "bad canary", "--identity", "ana@laptop"
    )
    assert code == 0, output
    code, output = await cli.run("watch", "steered", "-n", "plumbing")
    assert code == 1, output
    assert "bad canary" in output

    status = await cli.json("status", "steered", "-n", "plumbing")
    actions = [(a["action"], a["identity"], a.get("reason")) for a in status["actions"]]
    assert ("pause", "ana@laptop", "lunch") in actions
    assert ("resume", "bo@desk", None) in actions
    assert ("abort", "ana@laptop", "bad canary") in actions

    code, output = await cli.run("promote", "steered", "-n", "plumbing")
    assert code == 1, output  # ended: nothing to promote
    assert "already ended" in output


async def test_new_revision_goes_to_the_running_rollout(cli: Cli) -> None:
    first = FakeCluster(revision="rev-2")
    await cli.start("moving", first, maxWeight=100, stepWeight=5)
    await _wait_for_phase(cli, "moving", "Progressing")
    again = await cli.start("moving", FakeCluster(revision="rev-3"))
    assert again.existing
    status = await cli.json("status", "moving", "-n", "plumbing")
    assert status["revision"] == "rev-3"
    code, output = await cli.run("abort", "moving", "-n", "plumbing", "--reason", "cleanup")
    assert code == 0, output
    code, _ = await cli.run("watch", "moving", "-n", "plumbing")
    assert code == 1


async def test_unknown_rollout(cli: Cli) -> None:
    code, output = await cli.run("status", "nobody", "-n", "plumbing")
    assert code == 1, output
    assert "no rollout" in output
    code, output = await cli.run("promote", "nobody", "-n", "plumbing")
    assert code == 1, output


async def _wait_for_phase(cli: Cli, name: str, phase: str) -> None:
    for _ in range(100):
        code, output = await cli.run("status", name, "-n", "plumbing", "-o", "json")
        if code == 0 and json.loads(output)["phase"] == phase:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never reached {phase}")


async def test_status_of_a_finished_rollout_without_a_worker(
    dev_server_env: WorkflowEnvironment, no_unfinished_handlers: None
) -> None:
    """No worker to answer the query: the status comes from visibility and the failure."""
    client = dev_server_env.client
    queue = "coalmine-cli-short-lived"
    settings = Settings(
        temporal=TemporalSettings(task_queue=queue), worker=WorkerSettings(metrics_port=0)
    )
    broken = FakeCluster(metrics={"request-success-rate": [failing("request-success-rate")]})
    async with build_worker(client, settings, api_client=None, activities=ACTIVITIES):
        started = await start_on(client, queue, "orphan", broken)
        with pytest.raises(WorkflowFailureError):
            await started.handle.result()
    status = await fetch_status(client, started.handle.id)
    assert status.phase == Phase.FAILED
    assert "failed checks threshold reached 2" in status.message
    assert status.name == "orphan"
    assert status.namespace == "plumbing"


async def test_retry_refuses_a_promoted_rollout(cli: Cli) -> None:
    started = await cli.start("done", FakeCluster(), maxWeight=25)
    await started.handle.result()
    code, output = await cli.run("retry", "done", "-n", "plumbing")
    assert code == 1, output
    assert "nothing to retry" in output
