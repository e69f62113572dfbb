"""Support for whole-rollout tests: a worker with the real activities on the sandbox cluster, its
Prometheus and load tester, and a Temporal dev server; helpers that read the cluster.

The worker runs in the test process (``build_worker`` with the product's activity classes) so a
test can read the workflow's status while it runs; it talks to the sandbox only through its
kubeconfig, Prometheus URL and mesh proxy, as a worker in a cluster would. Test modules import
the fixtures ``api_client``, ``rollout_worker`` and ``scenario`` (all of it as one `Scenario`)
from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.analysis import AnalysisSettings
from activities.kubernetes import build_api_client
from sandbox.runner import SandboxHandle
from tests import canaries
from tests.conftest import Kubectl
from worker.app import activity_methods, build_worker, product_activities
from worker.settings import Settings, TemporalSettings, WorkerSettings
from workflows.model import (
    WORKFLOW_NAME,
    Phase,
    RolloutInput,
    RolloutResult,
    RolloutStatus,
    workflow_id,
)
from workflows.providers import DEFAULT_PROVIDER
from workflows.spec import Canary

GOOD = "quay.io/stefanprodan/podinfo:1.4.1"
BAD = "quay.io/stefanprodan/podinfo:1.4.2"

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {ns}, labels: {{app: podinfo}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
      - name: podinfod
        image: quay.io/stefanprodan/podinfo:1.4.0
        ports: [{{name: http, containerPort: 9898}}]
"""


def canary(
    ns: str,
    *,
    threshold: int = 3,
    max_weight: int = 30,
    metrics: list[dict[str, Any]] | None = None,
    extra_webhooks: list[dict[str, Any]] | None = None,
) -> Canary:
    """The article's Canary, scaled down, with the same load test.

    4 s steps leave time for two scrapes of the canary's series after each weight change (a
    rate needs two), even on a busy machine; metric windows are 10 s.
    """
    builtin = [
        {"name": "request-success-rate", "interval": "10s", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "interval": "10s", "thresholdRange": {"max": 500}},
    ]
    load_test = {
        "name": "load-test",
        "url": "http://flagger-loadtester.test/",
        "timeout": "5s",
        "metadata": {"cmd": f"hey -z 1m -q 20 -c 2 http://podinfo.{ns}:9898/"},
    }
    return canaries.canary(
        ns,
        progress_deadline=30,
        analysis={
            "interval": "4s",
            "threshold": threshold,
            "maxWeight": max_weight,
            "stepWeight": 10,
            "metrics": builtin if metrics is None else metrics,
            "webhooks": [load_test, *(extra_webhooks or [])],
        },
    )


@pytest.fixture(scope="module")
def api_client(sandbox_cluster: SandboxHandle) -> Any:
    return build_api_client(kubeconfig=str(sandbox_cluster.kubeconfig))


@pytest.fixture(scope="module")
async def rollout_worker(
    dev_server_env: WorkflowEnvironment,
    sandbox_cluster: SandboxHandle,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Worker]:
    """The product's worker, as the `coalmine` ServiceAccount through the API proxy: the same
    activities and workflows `coalmine worker` registers, on a task queue of the module's own;
    its cluster-wide provider (``--mesh-provider``) is the module's ``MESH_PROVIDER`` if it sets
    one."""
    queue = f"rollouts-{uuid.uuid4().hex[:6]}"
    mesh_provider = getattr(request.module, "MESH_PROVIDER", DEFAULT_PROVIDER)
    settings = Settings(
        temporal=TemporalSettings(task_queue=queue),
        worker=WorkerSettings(mesh_provider=mesh_provider),
    )
    analysis = AnalysisSettings(
        prometheus_url=sandbox_cluster.prometheus_url, http_proxy=sandbox_cluster.mesh_url
    )
    worker_api = build_api_client(kubeconfig=str(sandbox_cluster.worker_kubeconfig))
    activities = activity_methods(*product_activities(worker_api, settings, analysis=analysis))
    worker = build_worker(
        dev_server_env.client, settings, api_client=worker_api, activities=activities
    )
    try:
        async with worker:
            yield worker
    finally:
        worker_api.close()


@dataclass
class Scenario:
    """One test's rollouts: the dev server, the module's worker, kubectl, the test's namespace
    and an admin client — what every whole-rollout test needs, as one fixture (`scenario`)."""

    env: WorkflowEnvironment
    worker: Worker
    kubectl: Kubectl
    ns: str
    api: Any

    async def start(self, spec: Canary) -> WorkflowHandle[Any, Any]:
        return await start(self.env, self.worker, spec)

    async def initialize(self, spec: Canary) -> None:
        """podinfo applied and its first rollout run (initialization only)."""
        await initialize(self.env, self.worker, self.kubectl, spec, self.api)

    async def run(
        self, spec: Canary, *, progressing: Callable[[RolloutStatus], None] | None = None
    ) -> RolloutStatus:
        """A rollout run to its end, ``progressing`` called with each status read while it
        progresses (to look at the cluster then); its final status."""
        handle = await self.start(spec)

        def seen(status: RolloutStatus) -> None:
            if progressing is not None and status.phase == Phase.PROGRESSING:
                progressing(status)

        await watch(handle, seen)
        return await read_status(handle)

    def release(self, image: str, *, kind: str = "deployment", **env: str) -> None:
        """A new release of the target, as a user makes one: its env (faults) first, then the
        image (``kubectl set env``, ``kubectl set image``)."""
        if env:
            pairs = [f"{k}={v}" for k, v in env.items()]
            self.kubectl.run("-n", self.ns, "set", "env", f"{kind}/podinfo", *pairs)
        self.kubectl.run("-n", self.ns, "set", "image", f"{kind}/podinfo", f"podinfod={image}")


@pytest.fixture
def scenario(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_namespace: str,
    api_client: Any,
) -> Scenario:
    return Scenario(dev_server_env, rollout_worker, kubectl, sandbox_namespace, api_client)


async def start(env: WorkflowEnvironment, worker: Worker, spec: Canary) -> WorkflowHandle[Any, Any]:
    return await env.client.start_workflow(
        WORKFLOW_NAME,
        RolloutInput(canary=spec, requested_by="integration test"),
        id=workflow_id(cluster="default", namespace=spec.namespace, name=spec.name),
        task_queue=worker.task_queue,
        result_type=RolloutResult,
    )


async def read_status(handle: WorkflowHandle[Any, Any]) -> RolloutStatus:
    return await handle.query("status", result_type=RolloutStatus)


async def watch(handle: WorkflowHandle[Any, Any], seen: Callable[[RolloutStatus], None]) -> None:
    """Query the status every 0.2 s until the workflow closes, handing each to ``seen``."""
    while True:
        # The query can race the run's first task; the next poll answers.
        with contextlib.suppress(WorkflowQueryFailedError, RPCError):
            seen(await read_status(handle))
        description = await handle.describe()
        if description.status is not None and description.status.name != "RUNNING":
            return
        await asyncio.sleep(0.2)


def weights(api_client: Any, ns: str) -> dict[str, int]:
    vs = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", ns, "virtualservices", "podinfo"
    )
    route = vs["spec"]["http"][0]["route"]
    return {r["destination"]["host"]: r.get("weight", 0) for r in route}


def replicas(api_client: Any, ns: str, name: str) -> int:
    return k8s.AppsV1Api(api_client).read_namespaced_deployment(name, ns).spec.replicas


def image(api_client: Any, ns: str, name: str) -> str:
    dep = k8s.AppsV1Api(api_client).read_namespaced_deployment(name, ns)
    return dep.spec.template.spec.containers[0].image


def production_traffic(sandbox: SandboxHandle, ns: str) -> None:
    """Users' traffic to the apex Service for the whole test (the canary gets its share)."""
    cmd = f"hey -z 90s -q 20 -c 2 http://podinfo.{ns}:9898/"
    payload = {"name": "users", "namespace": ns, "phase": "Progressing", "metadata": {"cmd": cmd}}
    with httpx.Client(proxy=sandbox.mesh_url, timeout=10) as http:
        response = http.post("http://flagger-loadtester.test/", json=payload)
    assert response.status_code in (200, 202), response.text


async def initialize(
    env: WorkflowEnvironment, worker: Worker, kubectl: Kubectl, spec: Canary, api_client: Any
) -> None:
    """Apply podinfo and run the first rollout: initialization only, as Flagger does."""
    kubectl.apply(DEPLOYMENT.format(ns=spec.namespace))
    handle = await start(env, worker, spec)
    await watch(handle, lambda _: None)
    status = await read_status(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    ns = spec.namespace
    assert image(api_client, ns, "podinfo-primary") == "quay.io/stefanprodan/podinfo:1.4.0"
    assert replicas(api_client, ns, "podinfo") == 0
    assert weights(api_client, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}
    core = k8s.CoreV1Api(api_client)
    services = {s.metadata.name for s in core.list_namespaced_service(ns).items}
    assert {"podinfo", "podinfo-primary", "podinfo-canary"} <= services


IDLE = {"flagger.app/scale-to-zero": "true"}
FIRST = "quay.io/stefanprodan/podinfo:1.4.0"

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: podinfo, namespace: {ns}, labels: {{app: podinfo}}}}
spec:
  selector: {{matchLabels: {{app: podinfo}}}}
  updateStrategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: 1}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      nodeSelector: {{type: kwok}}
      containers:
      - name: podinfod
        image: {image}
        ports: [{{name: http, containerPort: 9898}}]
"""
