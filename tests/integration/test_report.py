"""The rollout report against real parts: a real Prometheus with known series, the Temporal dev
server, and the ``coalmine`` command as a process.

Prometheus scrapes an exporter of Istio's metrics whose numbers are exact (counters growing
linearly, every request in one latency bucket): the canary ``podinfo`` answers 30% errors in
300 ms, the primary ``podinfo-primary`` none in 40 ms, so the p99s are 497.5 ms and 49.5 ms
(``histogram_quantile`` interpolates within the bucket). A recorded history, moved to the
present, is drawn beside them; then a rollout runs on the dev server (the workflow with the
fake activities of the workflow tests, one-second intervals) and the command draws it, after
its rollback and while another one is still running.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.worker import Worker

from tests import canaries
from tests.conftest import TemporalServer
from tests.integration.analysis_support import (
    PrometheusProcess,
    Workload,
    closed_port_url,
    mesh_exporter,
    prometheus_binary,
    run_prometheus,
    wait_for,
)
from tests.workflows.fakes import ACTIVITIES, CLUSTERS, FakeCluster, failing, passing
from worker.report.facts import Report
from worker.report.html import render_html
from worker.report.png import render_png
from worker.report.series import compare
from worker.report.timeline import timeline_of
from worker.runner import workflow_runner
from workflows.model import RolloutInput, workflow_id
from workflows.rollout import CanaryRolloutWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"
COALMINE = str(Path(sys.executable).parent / "coalmine")
TASK_QUEUE = f"coalmine-report-{uuid.uuid4().hex[:8]}"
WORKLOADS = [
    Workload("test", "podinfo", ok_per_second=7, errors_per_second=3, latency_ms=300),
    Workload("test", "podinfo-primary", ok_per_second=10, errors_per_second=0, latency_ms=40),
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    binary = prometheus_binary()
    assert binary, "no prometheus binary: run scripts/fetch-tools.sh or set COALMINE_PROMETHEUS_BIN"
    with (
        mesh_exporter(WORKLOADS) as target,
        run_prometheus(binary, [target], tmp_path_factory.mktemp("prom")) as prom,
    ):
        from activities.analysis.metrics.prometheus import PrometheusProvider
        from activities.errors import NoData

        provider = PrometheusProvider(address=prom.url)

        def two_samples() -> bool:
            try:
                count = provider.run_query("min(count_over_time(istio_requests_total[1m]))")
            except NoData:
                return False
            return count >= 3

        wait_for(two_samples, what="samples for rate()")
        yield prom


def _moved_to_now(name: str) -> WorkflowHistory:
    """A recorded history with every event time shifted so that it ends now."""
    data = json.loads((HISTORIES / f"{name}.json").read_text())
    stamps = [datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00")) for e in data["events"]]
    shift = datetime.now(UTC) - stamps[-1]
    for event, stamp in zip(data["events"], stamps, strict=True):
        event["eventTime"] = (stamp + shift).isoformat().replace("+00:00", "Z")
    return WorkflowHistory.from_json("canary/default/test/podinfo", data)


def _last(samples: list[tuple[datetime, float]]) -> float:
    assert samples, "no samples"
    return samples[-1][1]


def test_the_canary_beside_the_primary_from_real_prometheus(
    prometheus: PrometheusProcess,
) -> None:
    timeline = timeline_of(_moved_to_now("rolled_back"))
    now = datetime.now(UTC)
    comparisons = compare(timeline, prometheus_url=prometheus.url, now=now)
    assert comparisons.notes == []
    found = {c.metric: c for c in comparisons.items}
    assert set(found) == {"request-success-rate", "request-duration"}
    rate, duration = found["request-success-rate"], found["request-duration"]
    assert _last(rate.canary) == pytest.approx(70.0, abs=0.01)
    assert _last(rate.primary) == pytest.approx(100.0)
    assert (rate.min, rate.max, rate.unit) == (99.0, None, "%")
    # Under the 500 ms threshold both, and still a regression to see: 49.5 ms → 497.5 ms.
    assert _last(duration.canary) == pytest.approx(497.5, abs=0.5)
    assert _last(duration.primary) == pytest.approx(49.5, abs=0.5)
    assert duration.max == 500.0
    assert comparisons.start is not None
    assert comparisons.start < timeline.started
    assert all(comparisons.start <= t <= now + timedelta(minutes=1) for t, _ in duration.canary)

    report = Report(timeline, comparisons, url="http://ui.invalid/run", generated=now)
    page = render_html(report, now)
    assert page.count("<svg") == 5  # traffic, two checks, two comparisons
    assert "canary vs primary" in page
    assert render_png(report, now)[:4] == b"\x89PNG"


def test_prometheus_unreachable_is_a_note_not_a_failure() -> None:
    timeline = timeline_of(_moved_to_now("succeeded"))
    comparisons = compare(timeline, prometheus_url=closed_port_url(), now=datetime.now(UTC))
    assert comparisons.items == []
    assert len(comparisons.notes) == 2
    assert all("unreachable" in note for note in comparisons.notes)
    page = render_html(Report(timeline, comparisons), datetime.now(UTC))
    assert "unreachable" in page


# --- the command, end to end, on the dev server ------------------------------------------------


@pytest.fixture(scope="module")
async def dev_client(temporal_server: TemporalServer) -> Client:
    from temporalio.contrib.pydantic import pydantic_data_converter

    return await Client.connect(temporal_server.address, data_converter=pydantic_data_converter)


@pytest.fixture(scope="module")
async def fake_worker(dev_client: Client) -> AsyncIterator[Worker]:
    async with Worker(
        dev_client,
        task_queue=TASK_QUEUE,
        workflows=[CanaryRolloutWorkflow],
        activities=ACTIVITIES,
        workflow_runner=workflow_runner(),
    ) as worker:
        yield worker


async def _start(
    client: Client,
    cluster: str,
    fake: FakeCluster,
    *,
    max_events: int | None = None,
    **analysis: Any,
) -> Any:
    canary = canaries.canary(
        "test",
        analysis={
            "interval": "1s",
            "threshold": 2,
            "stepWeight": 10,
            "maxWeight": 30,
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"},
            ],
            **analysis,
        },
    )
    wid = workflow_id(cluster=cluster, namespace="test", name="podinfo")
    CLUSTERS[wid] = fake
    rollout = RolloutInput(
        canary=canary,
        cluster=cluster,
        revision=fake.revision,
        requested_by="ci",
        reason="job 7",
        max_history_events=max_events,
    )
    return await client.start_workflow(
        CanaryRolloutWorkflow.run, rollout, id=wid, task_queue=TASK_QUEUE
    )


async def _coalmine(server: TemporalServer, *args: str, prometheus: str = "") -> tuple[int, str]:
    env = {**os.environ, "PROMETHEUS_URL": prometheus, "TEMPORAL_UI_URL": "http://ui.invalid"}
    process = await asyncio.create_subprocess_exec(
        COALMINE,
        "rollout",
        "--address",
        server.address,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_command_draws_a_rolled_back_rollout(
    temporal_server: TemporalServer,
    dev_client: Client,
    fake_worker: Worker,
    prometheus: PrometheusProcess,
    tmp_path: Path,
) -> None:
    cluster = f"report-{uuid.uuid4().hex[:6]}"
    ok = passing("request-success-rate")
    bad = failing("request-success-rate")
    fake = FakeCluster(metrics={"request-success-rate": [ok, bad, bad]})
    handle = await _start(dev_client, cluster, fake)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout=60)

    page = tmp_path / "report.html"
    code, out = await _coalmine(
        temporal_server,
        "report", "podinfo", "-n", "test", "--cluster", cluster, "-o", str(page),
        prometheus=prometheus.url,
    )  # fmt: skip
    assert code == 0, out
    assert "podinfo.test rolled back: Rolling back podinfo.test failed checks threshold" in out
    assert f"report written to {page}" in out
    html = page.read_text()
    assert "ROLLED BACK" in html
    assert "decided by: request-success-rate: success rate 69.17% &lt; 99%" in html
    run_id = (await handle.describe()).run_id
    assert (
        f"http://ui.invalid/namespaces/default/workflows/canary%2F{cluster}%2Ftest%2Fpodinfo/{run_id}/history"
        in html
    )
    assert html.count("<svg") == 5  # the comparisons came from Prometheus
    assert "ci (job 7)" in html
    # Each step's checks, from whichever shape the workflow records them in.
    assert len(re.findall(r"<td>69\.17</td>", html)) == 2
    assert "Canary failed! Scaling down podinfo.test" in html

    picture = tmp_path / "report.png"
    code, out = await _coalmine(
        temporal_server, "report", "podinfo", "-n", "test", "--cluster", cluster, "-o", str(picture)
    )
    assert code == 0, out
    assert picture.read_bytes()[:4] == b"\x89PNG"


async def test_the_command_draws_a_running_rollout_and_refuses_what_it_cannot_do(
    temporal_server: TemporalServer, dev_client: Client, fake_worker: Worker, tmp_path: Path
) -> None:
    cluster = f"report-{uuid.uuid4().hex[:6]}"
    handle: WorkflowHandle[Any, Any] = await _start(
        dev_client, cluster, FakeCluster(), interval="1h"
    )
    try:
        for _ in range(200):  # until the first step's traffic moved (then it waits an hour)
            status = await handle.query(CanaryRolloutWorkflow.status)
            if status.canary_weight == 10:
                break
            await asyncio.sleep(0.05)
        page = tmp_path / "running.html"
        code, out = await _coalmine(
            temporal_server,
            "report",
            "podinfo",
            "-n",
            "test",
            "--cluster",
            cluster,
            "-o",
            str(page),
        )
        assert code == 0, out
        assert "podinfo.test running" in out
        html = page.read_text()
        assert "RUNNING" in html
        assert "still running" in html
        assert "no Prometheus address" in html
    finally:
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=60)

    code, out = await _coalmine(temporal_server, "report", "nothing", "-n", "test")
    assert code == 1
    assert "no rollout canary/default/test/nothing" in out
    code, out = await _coalmine(
        temporal_server, "report", "podinfo", "-n", "test", "-o", str(tmp_path / "r.pdf")
    )
    assert code == 2
    assert "write the report as .html" in out


async def test_a_rollout_continued_as_new_is_drawn_across_its_runs(
    temporal_server: TemporalServer, dev_client: Client, fake_worker: Worker, tmp_path: Path
) -> None:
    cluster = f"report-{uuid.uuid4().hex[:6]}"
    handle = await _start(
        dev_client, cluster, FakeCluster(), max_events=100, stepWeight=5, maxWeight=50
    )
    await asyncio.wait_for(handle.result(), timeout=90)
    runs = [r async for r in dev_client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert len(runs) >= 2, "the rollout should have continued as new"
    page = tmp_path / "continued.html"
    code, out = await _coalmine(
        temporal_server, "report", "podinfo", "-n", "test", "--cluster", cluster, "-o", str(page)
    )
    assert code == 0, out
    assert "podinfo.test promoted" in out
    html = page.read_text()
    # Every weight step of every run: 5, 10, … 50, whichever run took it.
    steps = re.findall(r"Advance podinfo\.test canary weight (\d+)", html)
    assert [int(w) for w in steps] == list(range(5, 55, 5))
    assert "ci (job 7)" in html  # the first run's input, not the continued one's


def test_recorded_payloads_decode() -> None:
    # The recorded histories this module moves in time are plain JSON payloads.
    first = json.loads((HISTORIES / "rolled_back.json").read_text())["events"][0]
    payload = first["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
