"""Flagger's own Prometheus series, scraped over HTTP from the worker's endpoint after real
rollouts on the time-skipping server (the product's worker wiring, activities faked).

Flagger's alerts and dashboards query ``flagger_canary_status``, ``flagger_canary_weight``
(by ``workload``), ``flagger_canary_total``, ``flagger_canary_duration_seconds``,
``flagger_canary_metric_analysis``, ``flagger_canary_successes_total`` /
``flagger_canary_failures_total`` and ``flagger_info``: each is checked here by name, label
names and type as a Prometheus server would read them from the text format.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.ports import free_port
from tests.workflows.conftest import (
    TASK_QUEUE,
    expect_rollback,
    make_canary,
    register_search_attributes,
)
from tests.workflows.fakes import ACTIVITIES, CLUSTERS, FakeCluster, failing, new_workflow_id
from worker.app import build_worker
from worker.metrics import RolloutMetrics
from worker.settings import Settings, TemporalSettings, WorkerSettings
from workflows.activity_api import ActivityName
from workflows.model import RolloutInput
from workflows.rollout import CanaryRolloutWorkflow
from workflows.spec import Canary

PODINFO = {"name": "podinfo", "namespace": "test"}
FLAGGER_TYPES = {
    "flagger_info": "gauge",
    "flagger_canary_total": "gauge",
    "flagger_canary_status": "gauge",
    "flagger_canary_weight": "gauge",
    "flagger_canary_metric_analysis": "gauge",
    "flagger_canary_duration_seconds": "histogram",
    "flagger_canary_successes": "counter",
    "flagger_canary_failures": "counter",
}


@dataclass
class Scrape:
    """One scrape of the endpoint: metric family types and every sample."""

    types: dict[str, str]
    samples: list[tuple[str, dict[str, str], float]]

    def value(self, metric: str, /, **labels: str) -> float | None:
        for sample, sample_labels, value in self.samples:
            if sample == metric and sample_labels == labels:
                return value
        return None

    def labels_of(self, name: str) -> set[frozenset[str]]:
        return {frozenset(labels) for sample, labels, _ in self.samples if sample == name}


@dataclass
class MetricsWorker:
    client: Client
    queue: str
    url: str

    async def run(self, cluster: FakeCluster, canary: Canary) -> WorkflowHandle[Any, Any]:
        """Start a rollout on this worker's own queue (the session worker would not count it)."""
        workflow_id = new_workflow_id()
        CLUSTERS[workflow_id] = cluster
        rollout = RolloutInput(canary=canary, revision=cluster.revision)
        return await self.client.start_workflow(
            CanaryRolloutWorkflow.run, rollout, id=workflow_id, task_queue=self.queue
        )

    async def scrape(self) -> Scrape:
        async with httpx.AsyncClient() as http:
            text = (await http.get(self.url, timeout=5)).text
        families = list(text_string_to_metric_families(text))
        return Scrape(
            types={f.name: f.type for f in families},
            samples=[(s.name, dict(s.labels), s.value) for f in families for s in f.samples],
        )


@pytest.fixture
async def worker(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[MetricsWorker]:
    """The product's worker (`build_worker`: its metrics interceptor) with the fake
    activities on a queue of its own, and the metrics endpoint the worker command serves."""
    client = time_skipping_env.client
    await register_search_attributes(client)
    queue = f"{TASK_QUEUE}-metrics-{uuid.uuid4().hex[:8]}"
    temporal = TemporalSettings(address=client.service_client.config.target_host, task_queue=queue)
    settings = Settings(temporal=temporal, worker=WorkerSettings(metrics_port=0))
    metrics = RolloutMetrics(mesh_provider="istio")
    port = free_port()
    server = metrics.serve(port=port, address="127.0.0.1")
    worker = build_worker(client, settings, api_client=None, metrics=metrics, activities=ACTIVITIES)
    try:
        async with worker:
            yield MetricsWorker(client, queue, f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()


def check_flagger_shapes(scrape: Scrape) -> None:
    """Every family of Flagger's recorder, with its type and label names."""
    for name, kind in FLAGGER_TYPES.items():
        assert scrape.types.get(name) == kind, name
    outcome = frozenset({"name", "namespace", "deployment_strategy", "analysis_status"})
    expected = {
        "flagger_info": {frozenset({"version", "mesh_provider"})},
        "flagger_canary_total": {frozenset({"namespace"})},
        "flagger_canary_status": {frozenset({"name", "namespace"})},
        "flagger_canary_weight": {frozenset({"workload", "namespace"})},
        "flagger_canary_metric_analysis": {frozenset({"name", "namespace", "metric"})},
        "flagger_canary_duration_seconds_count": {frozenset({"name", "namespace"})},
    }
    for name, labels in expected.items():
        assert scrape.labels_of(name) == labels, name
    for name in ("flagger_canary_successes_total", "flagger_canary_failures_total"):
        assert scrape.labels_of(name) <= {outcome}, name


async def test_a_promoted_rollout_in_flaggers_series(worker: MetricsWorker) -> None:
    seen: list[Scrape] = []

    async def mid_rollout() -> None:
        seen.append(await worker.scrape())

    cluster = FakeCluster()
    # Scraped inside the weight change to 30: the previous step (20) is what Prometheus sees.
    cluster.on(ActivityName.SET_WEIGHTS, lambda a: a.canary == 30, mid_rollout, inline=True)
    handle = await worker.run(cluster, make_canary())
    await handle.result()

    (during,) = seen
    assert during.value("flagger_canary_status", **PODINFO) == 0  # Progressing
    assert during.value("flagger_canary_weight", workload="podinfo", namespace="test") == 20
    primary = {"workload": "podinfo-primary", "namespace": "test"}
    assert during.value("flagger_canary_weight", **primary) == 80

    after = await worker.scrape()
    check_flagger_shapes(after)
    version = metadata.version("coalmine")
    assert after.value("flagger_info", version=version, mesh_provider="istio") == 1
    assert after.value("flagger_canary_total", namespace="test") == 1
    assert after.value("flagger_canary_status", **PODINFO) == 1
    assert after.value("flagger_canary_weight", **primary) == 100
    assert after.value("flagger_canary_weight", workload="podinfo", namespace="test") == 0
    metric = {**PODINFO, "metric": "request-success-rate"}
    assert after.value("flagger_canary_metric_analysis", **metric) == 99.5
    # One observation per analysis step (10, 20 … 50: five), each a step's checks' time.
    steps = after.value("flagger_canary_duration_seconds_count", **PODINFO)
    assert steps is not None
    assert steps >= 5
    assert after.value("flagger_canary_duration_seconds_bucket", **PODINFO, le="10.0") == steps
    completed = {**PODINFO, "deployment_strategy": "canary", "analysis_status": "completed"}
    assert after.value("flagger_canary_successes_total", **completed) == 1
    assert after.value("flagger_canary_failures_total", **completed) is None
    # Coalmine's own series come from the same observations.
    assert after.value("coalmine_canary_promotions_total", **PODINFO) == 1
    assert after.value("coalmine_canary_weight", **PODINFO) == 0


async def test_a_rolled_back_blue_green_and_a_skipped_analysis(worker: MetricsWorker) -> None:
    broken = FakeCluster(metrics={"request-success-rate": [failing("request-success-rate")]})
    blue_green = make_canary(iterations=3, threshold=2)
    await expect_rollback(await worker.run(broken, blue_green))

    failed = await worker.scrape()
    check_flagger_shapes(failed)
    assert failed.value("flagger_canary_status", **PODINFO) == 2
    outcome = {**PODINFO, "deployment_strategy": "blue-green", "analysis_status": "completed"}
    assert failed.value("flagger_canary_failures_total", **outcome) == 1
    metric = {**PODINFO, "metric": "request-success-rate"}
    assert failed.value("flagger_canary_metric_analysis", **metric) == 69.17

    skipped = make_canary(skipAnalysis=True)
    await (await worker.run(FakeCluster(), skipped)).result()

    after = await worker.scrape()
    outcome = {**PODINFO, "deployment_strategy": "canary", "analysis_status": "skipped"}
    assert after.value("flagger_canary_successes_total", **outcome) == 1
    assert after.value("flagger_canary_status", **PODINFO) == 1
