"""Flagger's builtin Istio queries, run by the real Prometheus, read the faults a canary carries.

The canary (``podinfo`` in namespace ``test``) and the primary sit behind a VirtualService with
weights 90/10, under a bounded async load loop through the mesh (127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from sandbox.prometheus import render_config

SUCCESS_RATE = (
    'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",'
    'destination_workload=~"podinfo",response_code!~"5.*"}[30s])) / '
    'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",'
    'destination_workload=~"podinfo"}[30s])) * 100'
)
P99 = (
    "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{"
    'reporter="destination",destination_workload_namespace="test",destination_workload=~"podinfo"'
    "}[30s])) by (le))"
)


def manifests(canary_env: str) -> str:
    def deployment(name: str, env: str) -> str:
        return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: test}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: podinfod
        image: quay.io/stefanprodan/podinfo:1.4.1
        ports: [{{name: http, containerPort: 9898}}]
        env: [{env}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: test}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
"""

    return f"""
{deployment("podinfo-primary", "")}
---
{deployment("podinfo", canary_env)}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: podinfo-apex, namespace: test}}
spec:
  hosts: [podinfo-apex]
  http:
  - route:
    - {{destination: {{host: podinfo-primary}}, weight: 90}}
    - {{destination: {{host: podinfo}}, weight: 10}}
"""


async def _load(mesh_url: str, stop: asyncio.Event, *, limit: int = 6000, workers: int = 8) -> int:
    """GET http://podinfo-apex.test:9898/ through the mesh until ``stop`` or ``limit`` requests."""
    sent = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while not stop.is_set() and sent < limit:
            sent += 1
            await http.get("http://podinfo-apex.test:9898/")
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(proxy=mesh_url, timeout=10, trust_env=False) as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    return sent


async def _query(prometheus_url: str, promql: str) -> float | None:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        body = (await http.get(f"{prometheus_url}/api/v1/query", params={"query": promql})).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def _read_under_load(
    sandbox, promql: str, accept, *, within: float = 20.0
) -> list[float | None]:
    """Poll ``promql`` every second under load until ``accept(value)``; returns all readings."""
    stop = asyncio.Event()
    load = asyncio.create_task(_load(sandbox.mesh_url, stop))
    readings: list[float | None] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < within:
            await asyncio.sleep(1.0)
            value = await _query(sandbox.prometheus_url, promql)
            readings.append(value)
            if value is not None and accept(value):
                break
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await load
    return readings


def _rollout(kubectl, env: str) -> None:
    kubectl.apply(manifests(env))
    for name in ("podinfo", "podinfo-primary"):
        kubectl.run("-n", "test", "rollout", "status", f"deployment/{name}", "--timeout=30s")
    time.sleep(0.5)


@pytest.mark.timeout(90)
async def test_success_rate_query_reads_the_canary_error_rate(sandbox_cluster, kubectl):
    _rollout(kubectl, "{name: FAULT_ERROR_RATE, value: '0.3'}")
    readings = await _read_under_load(sandbox_cluster, SUCCESS_RATE, lambda v: abs(v - 70) <= 3)
    assert readings, "no reading"
    assert readings[-1] is not None
    assert abs(readings[-1] - 70) <= 3, readings


@pytest.mark.timeout(90)
async def test_p99_query_shows_added_latency(sandbox_cluster, kubectl):
    _rollout(kubectl, "{name: FAULT_LATENCY_MS, value: '300'}")
    readings = await _read_under_load(sandbox_cluster, P99, lambda v: v >= 250)
    assert readings[-1] is not None
    # Every canary request takes 300 ms: p99 lies in Istio's (250, 500] ms bucket.
    assert 250 <= readings[-1] <= 500, readings


def test_config_scrapes_the_mesh_every_second_and_extra_targets():
    import yaml

    config = yaml.safe_load(render_config("127.0.0.1:1", ["127.0.0.1:2"]))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["istio-mesh"]["scrape_interval"] == "1s"
    assert jobs["istio-mesh"]["static_configs"] == [{"targets": ["127.0.0.1:1"]}]
    assert jobs["extra"]["static_configs"] == [{"targets": ["127.0.0.1:2"]}]
