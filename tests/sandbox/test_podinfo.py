"""The podinfo-like workload over real HTTP and gRPC: what podinfo serves and Flagger's tutorials
call (``POST /token``, ``/status/{code}``, ``/delay/{seconds}``, ``/headers``, ``/healthz``,
``/readyz``, ``/metrics`` with podinfo's own metrics, the gRPC health service).

Most tests serve one simulated pod on a local aiohttp server (the workload is the same object the
mesh calls); the last goes through the sandbox cluster's mesh with the pod spec of Flagger's
tutorials.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import httpx
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sandbox.workloads.base import WorkloadRequest
from sandbox.workloads.podinfo import Podinfo
from tests.ports import free_port

TUTORIAL_CONTAINER: dict[str, Any] = {
    # podinfo's container as Flagger's Istio tutorials deploy it (kustomize/podinfo).
    "name": "podinfod",
    "image": "ghcr.io/stefanprodan/podinfo:6.0.1",
    "command": [
        "./podinfo",
        "--port=9898",
        "--port-metrics=9797",
        "--grpc-port=9999",
        "--grpc-service-name=podinfo",
        "--level=info",
        "--random-delay=false",
        "--random-error=false",
    ],
    "ports": [
        {"name": "http", "containerPort": 9898},
        {"name": "http-metrics", "containerPort": 9797},
        {"name": "grpc", "containerPort": 9999},
    ],
}


def pod(uid: str = "pod-1", **env: str) -> dict[str, Any]:
    container = dict(TUTORIAL_CONTAINER, env=[{"name": k, "value": v} for k, v in env.items()])
    return {
        "metadata": {"name": f"podinfo-{uid}", "namespace": "test", "uid": uid},
        "spec": {"containers": [container]},
    }


@dataclass
class Served:
    """One simulated pod behind a real HTTP server."""

    url: str
    podinfo: Podinfo
    pod: dict[str, Any]


async def _serve(podinfo: Podinfo, the_pod: dict[str, Any]) -> AsyncIterator[Served]:
    async def handle(request: web.Request) -> web.Response:
        answer = await podinfo(
            the_pod,
            the_pod["spec"]["containers"][0],
            WorkloadRequest(
                method=request.method,
                path=request.path,
                query=request.query_string,
                headers=dict(request.headers),
                body=await request.read(),
                host=request.host,
            ),
        )
        return web.Response(
            status=answer.status,
            body=answer.body,
            headers={"Content-Type": answer.content_type, **answer.headers},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Served(url=f"http://127.0.0.1:{port}", podinfo=podinfo, pod=the_pod)
    finally:
        await runner.cleanup()
        await podinfo.grpc.close()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for one in _serve(Podinfo(), pod()):
        yield one


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels}`` → value, labels as written."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


async def test_health_status_delay_and_headers_as_podinfo(
    served: Served, http: aiohttp.ClientSession
) -> None:
    for path in ("/healthz", "/readyz"):
        async with http.get(served.url + path) as response:
            assert response.status == 200
            assert await response.json() == {"status": "OK"}
    for code in (200, 418, 503):
        async with http.get(f"{served.url}/status/{code}") as response:
            assert response.status == code
            assert await response.json() == {"status": code}
    started = time.monotonic()
    async with http.get(f"{served.url}/delay/1") as response:
        assert response.status == 200
        assert await response.json() == {"delay": 1}
    assert 1.0 <= time.monotonic() - started < 3.0
    async with http.get(f"{served.url}/headers", headers={"x-canary": "insider"}) as response:
        echoed = await response.json()
        # Go's http.Header, as podinfo prints it: canonical names, lists of values, no Host.
        assert echoed["X-Canary"] == ["insider"]
        assert "Host" not in echoed
        assert all(isinstance(v, list) for v in echoed.values())


async def test_token_is_a_jwt_podinfo_validates(
    served: Served, http: aiohttp.ClientSession
) -> None:
    # Flagger's tutorials: curl -sd 'test' http://podinfo-canary:9898/token | grep token
    async with http.post(f"{served.url}/token", data=b"test") as response:
        assert response.status == 200
        issued = await response.json()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", issued["token"])
    assert issued["expires_at"].endswith("Z")
    bearer = {"Authorization": f"Bearer {issued['token']}"}
    async with http.get(f"{served.url}/token/validate", headers=bearer) as response:
        assert response.status == 200
        assert (await response.json())["token_name"] == "test"
    tampered = {"Authorization": f"Bearer {issued['token'][:-2]}xx"}
    async with http.get(f"{served.url}/token/validate", headers=tampered) as response:
        assert response.status == 401
    async with http.get(f"{served.url}/token") as response:
        assert response.status == 405  # podinfo issues tokens on POST only
    async with http.post(f"{served.url}/token") as response:
        token = (await response.json())["token"]
    async with http.get(
        f"{served.url}/token/validate", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert (await response.json())["token_name"] == "anonymous"


async def test_metrics_are_podinfos_own_with_its_labels(
    served: Served, http: aiohttp.ClientSession
) -> None:
    for path in ("/", "/", "/api/info", "/status/500", "/delay/0", "/no/such?x=1"):
        async with http.get(served.url + path) as response:
            await response.read()
    async with http.post(f"{served.url}/token", data=b"x") as response:
        await response.read()
    async with http.get(f"{served.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE http_request_duration_seconds histogram" in text
    samples = parse_metrics(text)
    assert samples['http_requests_total{status="200"}'] == 5  # /, /, /api/info, /delay/0, /token
    assert samples['http_requests_total{status="500"}'] == 1
    assert samples['http_requests_total{status="404"}'] == 1
    root = 'method="GET",path="root",status="200"'
    assert samples[f"http_request_duration_seconds_count{{{root}}}"] == 2
    assert samples[f'http_request_duration_seconds_bucket{{{root},le="+Inf"}}'] == 2
    assert samples[f'http_request_duration_seconds_bucket{{{root},le="0.005"}}'] == 2
    assert samples[f"http_request_duration_seconds_sum{{{root}}}"] < 0.01
    for labels in (
        'method="GET",path="api_info",status="200"',
        'method="GET",path="status",status="500"',
        'method="GET",path="delay",status="200"',
        'method="GET",path="no_such_x_1",status="404"',
        'method="POST",path="token",status="200"',
    ):
        assert samples[f"http_request_duration_seconds_count{{{labels}}}"] == 1, labels
    # The scrape itself is counted, after it is served, as podinfo's middleware does.
    async with http.get(f"{served.url}/metrics") as response:
        again = parse_metrics(await response.text())
    assert (
        again['http_request_duration_seconds_count{method="GET",path="metrics",status="200"}'] == 1
    )


async def test_metrics_see_the_pods_faults_and_latency(http: aiohttp.ClientSession) -> None:
    async for served in _serve(
        Podinfo(), pod("slow", FAULT_ERROR_RATE="0.5", FAULT_LATENCY_MS="30")
    ):
        for _ in range(10):
            async with http.get(served.url + "/") as response:
                await response.read()
        async with http.get(f"{served.url}/metrics") as response:
            samples = parse_metrics(await response.text())
        assert samples['http_requests_total{status="500"}'] == 5
        assert samples['http_requests_total{status="200"}'] == 5
        ok = 'method="GET",path="root",status="200"'
        # 30 ms of latency: nothing under 25 ms, everything under 250 ms.
        assert samples[f'http_request_duration_seconds_bucket{{{ok},le="0.025"}}'] == 0
        assert samples[f'http_request_duration_seconds_bucket{{{ok},le="0.25"}}'] == 5
        assert samples[f"http_request_duration_seconds_sum{{{ok}}}"] >= 0.15


async def test_each_pod_has_its_own_metrics_and_forgets_them(
    served: Served, http: aiohttp.ClientSession
) -> None:
    other = pod("pod-2")
    container = other["spec"]["containers"][0]
    get = WorkloadRequest(method="GET", path="/", query="", headers={}, body=b"", host="x")
    await served.podinfo(other, container, get)
    async with http.get(f"{served.url}/metrics") as response:
        assert 'http_requests_total{status="200"}' not in parse_metrics(await response.text())
    metrics = WorkloadRequest(
        method="GET", path="/metrics", query="", headers={}, body=b"", host="x"
    )
    other_text = (await served.podinfo(other, container, metrics)).body.decode()
    assert parse_metrics(other_text)['http_requests_total{status="200"}'] == 1
    served.podinfo.forget("pod-2")
    other_text = (await served.podinfo(other, container, metrics)).body.decode()
    assert 'http_requests_total{status="200"}' not in parse_metrics(other_text)


async def _check(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        except grpc.aio.AioRpcError as error:
            return -1 if error.code() == grpc.StatusCode.NOT_FOUND else -2
        return int(answer.status)


async def test_grpc_health_service_as_podinfo_registers_it(served: Served) -> None:
    container = served.pod["spec"]["containers"][0]
    port = await served.podinfo.grpc.serve(served.pod, container)
    assert port is not None
    assert await served.podinfo.grpc.serve(served.pod, container) == port  # one server per pod
    serving = health_pb2.HealthCheckResponse.SERVING
    assert await _check(port, "") == serving
    assert await _check(port, "podinfo") == serving
    assert await _check(port, "other") == -1  # NOT_FOUND, as grpc's health server
    renamed = dict(
        container, command=["./podinfo", "--grpc-port", "9999", "--grpc-service-name", "web"]
    )
    other_port = await served.podinfo.grpc.serve(pod("pod-3"), renamed)
    assert other_port is not None
    assert other_port != port
    assert await _check(other_port, "web") == serving
    assert await _check(other_port, "podinfo") == -1
    # A podinfo without --grpc-port serves no gRPC.
    no_grpc = {"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}
    assert await served.podinfo.grpc.serve(pod("pod-4"), no_grpc) is None
    # The pod is gone: so is its server.
    served.podinfo.forget("pod-1")
    await served.podinfo.grpc.close()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


TUTORIAL_MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers:
      - name: podinfod
        image: ghcr.io/stefanprodan/podinfo:6.0.1
        command: [./podinfo, --port=9898, --port-metrics=9797, --grpc-port=9999]
        ports:
        - {name: http, containerPort: 9898}
        - {name: http-metrics, containerPort: 9797}
---
apiVersion: v1
kind: Service
metadata: {name: podinfo, namespace: NS}
spec:
  selector: {app: podinfo}
  ports:
  - {name: http, port: 9898, targetPort: http}
  - {name: http-metrics, port: 9797, targetPort: http-metrics}
"""


@pytest.fixture
def mesh(sandbox_cluster: Any) -> Iterator[httpx.Client]:
    with httpx.Client(proxy=sandbox_cluster.mesh_url, timeout=10, trust_env=False) as client:
        yield client


def test_tutorial_calls_through_the_mesh(
    kubectl: Any, sandbox_namespace: str, mesh: httpx.Client
) -> None:
    ns = sandbox_namespace
    kubectl.apply(TUTORIAL_MANIFEST.replace("NS", ns))
    kubectl.run("-n", ns, "rollout", "status", "deployment/podinfo", "--timeout=30s")
    deadline = time.monotonic() + 10
    while mesh.get(f"http://podinfo.{ns}:9898/healthz").status_code != 200:
        assert time.monotonic() < deadline, "podinfo never answered through the mesh"
        time.sleep(0.2)
    token = mesh.post(f"http://podinfo.{ns}:9898/token", content=b"test")
    assert token.status_code == 200
    assert "token" in token.json()
    assert mesh.get(f"http://podinfo.{ns}:9898/status/503").status_code == 503
    # The metrics port answers podinfo's metrics, as Prometheus scrapes podinfo's pods.
    scraped = parse_metrics(mesh.get(f"http://podinfo.{ns}:9797/metrics").text)
    assert scraped['http_requests_total{status="503"}'] == 1
    assert (
        scraped['http_request_duration_seconds_count{method="POST",path="token",status="200"}'] == 1
    )
