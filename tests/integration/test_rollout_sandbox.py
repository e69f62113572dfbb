"""Whole rollouts with the real activities: the sandbox cluster, its Prometheus and load tester,
and a Temporal dev server — the scenario's success and rollback, checked in the cluster.

The worker runs in this process (``build_worker`` with the product's activity classes) so the
test can read the workflow's status while it runs; it talks to the sandbox only through its
kubeconfig, Prometheus URL and mesh proxy, as a worker in a cluster would.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.analysis import AnalysisActivities, AnalysisSettings
from activities.kubernetes import KubernetesActivities, build_api_client
from activities.router import RouterActivities
from sandbox.runner import SandboxHandle
from tests.conftest import Kubectl
from worker.app import activity_methods, build_worker
from worker.settings import Settings, TemporalSettings
from workflows.model import (
    WORKFLOW_NAME,
    Phase,
    RolloutInput,
    RolloutResult,
    RolloutStatus,
    workflow_id,
)
from workflows.spec import Canary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

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


def canary(ns: str, *, threshold: int = 3, max_weight: int = 30) -> Canary:
    """The article's Canary, scaled down, with the same load test.

    4 s steps leave time for two scrapes of the canary's series after each weight change (a
    rate needs two), even on a busy machine; metric windows are 10 s.
    """
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": ns},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "progressDeadlineSeconds": 30,
                "service": {"port": 9898},
                "analysis": {
                    "interval": "4s",
                    "threshold": threshold,
                    "maxWeight": max_weight,
                    "stepWeight": 10,
                    "metrics": [
                        {
                            "name": "request-success-rate",
                            "interval": "10s",
                            "thresholdRange": {"min": 99},
                        },
                        {
                            "name": "request-duration",
                            "interval": "10s",
                            "thresholdRange": {"max": 500},
                        },
                    ],
                    "webhooks": [
                        {
                            "name": "load-test",
                            "url": "http://flagger-loadtester.test/",
                            "timeout": "5s",
                            "metadata": {"cmd": f"hey -z 1m -q 20 -c 2 http://podinfo.{ns}:9898/"},
                        },
                    ],
                },
            },
        }
    )


@pytest.fixture(scope="module")
def api_client(sandbox_cluster: SandboxHandle) -> Any:
    return build_api_client(kubeconfig=str(sandbox_cluster.kubeconfig))


@pytest.fixture(scope="module")
async def rollout_worker(
    dev_server_env: WorkflowEnvironment, sandbox_cluster: SandboxHandle, api_client: Any
) -> AsyncIterator[Worker]:
    queue = f"rollouts-{uuid.uuid4().hex[:6]}"
    settings = Settings(temporal=TemporalSettings(task_queue=queue))
    analysis = AnalysisSettings(
        prometheus_url=sandbox_cluster.prometheus_url, http_proxy=sandbox_cluster.mesh_url
    )
    activities = activity_methods(
        KubernetesActivities(api_client),
        RouterActivities(api_client),
        AnalysisActivities(api_client=api_client, settings=analysis),
    )
    worker = build_worker(
        dev_server_env.client, settings, api_client=api_client, activities=activities
    )
    async with worker:
        yield worker


async def _start(
    env: WorkflowEnvironment, worker: Worker, spec: Canary
) -> WorkflowHandle[Any, Any]:
    return await env.client.start_workflow(
        WORKFLOW_NAME,
        RolloutInput(canary=spec, requested_by="integration test"),
        id=workflow_id(cluster="default", namespace=spec.namespace, name=spec.name),
        task_queue=worker.task_queue,
        result_type=RolloutResult,
    )


async def _status(handle: WorkflowHandle[Any, Any]) -> RolloutStatus:
    return await handle.query("status", result_type=RolloutStatus)


async def _watch(handle: WorkflowHandle[Any, Any], seen: Callable[[RolloutStatus], None]) -> None:
    """Query the status every 0.2 s until the workflow closes, handing each to ``seen``."""
    while True:
        # The query can race the run's first task; the next poll answers.
        with contextlib.suppress(WorkflowQueryFailedError, RPCError):
            seen(await _status(handle))
        description = await handle.describe()
        if description.status is not None and description.status.name != "RUNNING":
            return
        await asyncio.sleep(0.2)


def _weights(api_client: Any, ns: str) -> dict[str, int]:
    vs = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", ns, "virtualservices", "podinfo"
    )
    route = vs["spec"]["http"][0]["route"]
    return {r["destination"]["host"]: r.get("weight", 0) for r in route}


def _replicas(api_client: Any, ns: str, name: str) -> int:
    return k8s.AppsV1Api(api_client).read_namespaced_deployment(name, ns).spec.replicas


def _image(api_client: Any, ns: str, name: str) -> str:
    dep = k8s.AppsV1Api(api_client).read_namespaced_deployment(name, ns)
    return dep.spec.template.spec.containers[0].image


def _production_traffic(sandbox: SandboxHandle, ns: str) -> None:
    """Users' traffic to the apex Service for the whole test (the canary gets its share)."""
    cmd = f"hey -z 90s -q 20 -c 2 http://podinfo.{ns}:9898/"
    payload = {"name": "users", "namespace": ns, "phase": "Progressing", "metadata": {"cmd": cmd}}
    with httpx.Client(proxy=sandbox.mesh_url, timeout=10) as http:
        response = http.post("http://flagger-loadtester.test/", json=payload)
    assert response.status_code in (200, 202), response.text


async def _initialize(
    env: WorkflowEnvironment, worker: Worker, kubectl: Kubectl, spec: Canary, api_client: Any
) -> None:
    """Apply podinfo and run the first rollout: initialization only, as Flagger does."""
    kubectl.apply(DEPLOYMENT.format(ns=spec.namespace))
    handle = await _start(env, worker, spec)
    await _watch(handle, lambda _: None)
    status = await _status(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    ns = spec.namespace
    assert _image(api_client, ns, "podinfo-primary") == "quay.io/stefanprodan/podinfo:1.4.0"
    assert _replicas(api_client, ns, "podinfo") == 0
    assert _weights(api_client, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}
    core = k8s.CoreV1Api(api_client)
    services = {s.metadata.name for s in core.list_namespaced_service(ns).items}
    assert {"podinfo", "podinfo-primary", "podinfo-canary"} <= services


async def test_healthy_canary_is_promoted_step_by_step(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_namespace: str,
    sandbox_cluster: SandboxHandle,
    api_client: Any,
) -> None:
    spec = canary(sandbox_namespace)
    await _initialize(dev_server_env, rollout_worker, kubectl, spec, api_client)

    _production_traffic(sandbox_cluster, sandbox_namespace)
    kubectl.run("-n", sandbox_namespace, "set", "image", "deployment/podinfo", f"podinfod={GOOD}")
    handle = await _start(dev_server_env, rollout_worker, spec)
    phases: list[Phase] = []
    weights: list[int] = []
    canary_replicas: list[int] = []

    def seen(status: RolloutStatus) -> None:
        if not phases or phases[-1] != status.phase:
            phases.append(status.phase)
        if status.phase == Phase.PROGRESSING:
            canary_replicas.append(_replicas(api_client, sandbox_namespace, "podinfo"))
            weights.append(_weights(api_client, sandbox_namespace)["podinfo-canary"])

    await _watch(handle, seen)
    final = await _status(handle)
    assert final.phase == Phase.SUCCEEDED, final.model_dump_json(indent=1)
    result: RolloutResult = await handle.result()
    assert result.phase == Phase.SUCCEEDED

    # While progressing, the canary ran at the target's size and took a growing share.
    assert Phase.PROGRESSING in phases
    assert phases[-1] == Phase.SUCCEEDED
    assert max(canary_replicas) == 2
    assert weights == sorted(weights)
    assert max(weights) == 30
    # Promoted: the primary runs the new image, all traffic is on it, the canary is at zero.
    assert _image(api_client, sandbox_namespace, "podinfo-primary") == GOOD
    assert _weights(api_client, sandbox_namespace) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert _replicas(api_client, sandbox_namespace, "podinfo") == 0
    assert final.failed_checks == 0
    assert final.metrics["request-success-rate"].value is not None
    assert final.metrics["request-success-rate"].value >= 99
    messages = [e.message for e in final.events]
    assert f"Advance podinfo.{sandbox_namespace} canary weight 10" in messages
    assert f"Promotion completed! Scaling down podinfo.{sandbox_namespace}" in messages


async def test_faulty_canary_is_rolled_back_and_primary_untouched(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_namespace: str,
    sandbox_cluster: SandboxHandle,
    api_client: Any,
) -> None:
    ns = sandbox_namespace
    spec = canary(ns, threshold=3, max_weight=50)
    await _initialize(dev_server_env, rollout_worker, kubectl, spec, api_client)
    primary_before = k8s.AppsV1Api(api_client).read_namespaced_deployment("podinfo-primary", ns)

    # A bad release arrives as a real one would: a new image whose pods fail 30% of requests
    # and answer slowly.
    kubectl.run("-n", ns, "set", "env", "deployment/podinfo", "FAULT_ERROR_RATE=0.3",
                "FAULT_LATENCY_MS=700")  # fmt: skip
    kubectl.run("-n", ns, "set", "image", "deployment/podinfo", f"podinfod={BAD}")
    _production_traffic(sandbox_cluster, ns)
    handle = await _start(dev_server_env, rollout_worker, spec)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "failed checks threshold reached 3" in str(failure.value.cause)

    status = await _status(handle)
    assert status.phase == Phase.FAILED
    assert status.failed_checks == 3
    reasons = {c.source for c in status.failed_check_history}
    assert reasons & {"request-success-rate", "request-duration"}
    rate = status.metrics["request-success-rate"]
    if rate.value is not None:  # the window may still be empty at the first low weight
        assert rate.value < 99
    # Rolled back: traffic on the primary, the canary at zero, the primary never touched.
    assert _weights(api_client, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert _replicas(api_client, ns, "podinfo") == 0
    primary_after = k8s.AppsV1Api(api_client).read_namespaced_deployment("podinfo-primary", ns)
    assert primary_after.metadata.generation == primary_before.metadata.generation
    assert _image(api_client, ns, "podinfo-primary") == "quay.io/stefanprodan/podinfo:1.4.0"
    messages = [e.message for e in status.events]
    assert any(m.startswith(f"Halt podinfo.{ns} advancement") for m in messages)
    assert f"Canary failed! Scaling down podinfo.{ns}" in messages
