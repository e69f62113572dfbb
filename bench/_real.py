"""The real stack for one benchmark process: sandbox, Temporal dev server, in-process worker.

The worker is the product's (``build_worker`` with the product's activity classes), configured
as the integration tests configure it; it reaches the sandbox only through its kubeconfig,
Prometheus URL and mesh proxy. Everything is stopped on the way out, errors included.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client, WorkflowHandle

from activities.analysis import AnalysisSettings
from activities.kubernetes import build_api_client
from bench._support import deployment, dev_server, sandbox
from worker.app import activity_methods, build_worker, product_activities
from worker.settings import Settings, TemporalSettings
from workflows.model import WORKFLOW_NAME, RolloutInput, RolloutResult, workflow_id
from workflows.spec import Canary


@dataclass
class World:
    client: Client
    queue: str
    api_client: Any
    sandbox: Any
    dev_server_pid: int

    async def start(self, spec: Canary, **fields: Any) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            WORKFLOW_NAME,
            RolloutInput(canary=spec, requested_by="bench", **fields),
            id=workflow_id(cluster="default", namespace=spec.namespace, name=spec.name),
            task_queue=self.queue,
            result_type=RolloutResult,
        )

    def users(self, ns: str, name: str, seconds: int, qps: int = 10) -> None:
        """Users' traffic to the apex Service through the load tester, bounded in time."""
        cmd = f"hey -z {seconds}s -q {qps} -c 2 http://{name}.{ns}:9898/"
        payload = {
            "name": "users",
            "namespace": ns,
            "phase": "Progressing",
            "metadata": {"cmd": cmd},
        }
        with httpx.Client(proxy=self.sandbox.mesh_url, timeout=10) as http:
            response = http.post("http://flagger-loadtester.test/", json=payload)
        response.raise_for_status()


@contextlib.asynccontextmanager
async def real_world(*, activity_threads: int = 100) -> AsyncIterator[World]:
    with sandbox() as handle:
        async with dev_server() as server:
            api_client = build_api_client(kubeconfig=str(handle.kubeconfig), pool_size=32)
            queue = f"bench-{uuid.uuid4().hex[:6]}"
            settings = Settings(temporal=TemporalSettings(task_queue=queue))
            analysis = AnalysisSettings(
                prometheus_url=handle.prometheus_url, http_proxy=handle.mesh_url
            )
            executor = ThreadPoolExecutor(activity_threads, thread_name_prefix="bench-step")
            activities = activity_methods(
                *product_activities(api_client, settings, analysis=analysis, executor=executor)
            )
            worker = build_worker(
                server.client, settings, api_client=api_client, activities=activities
            )
            try:
                async with worker:
                    yield World(server.client, queue, api_client, handle, server.pid)
            finally:
                api_client.close()


def create_target(api_client: Any, ns: str, name: str, replicas: int = 1) -> None:
    with contextlib.suppress(ApiException):
        k8s.CoreV1Api(api_client).create_namespace({"metadata": {"name": ns}})
    k8s.AppsV1Api(api_client).create_namespaced_deployment(ns, deployment(ns, name, replicas))


def set_image(api_client: Any, ns: str, name: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": image}]}}}}
    k8s.AppsV1Api(api_client).patch_namespaced_deployment(name, ns, patch)


def canary_weight(api_client: Any, ns: str, name: str) -> int:
    vs = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", ns, "virtualservices", name
    )
    for route in vs["spec"]["http"][0]["route"]:
        if route["destination"]["host"] == f"{name}-canary":
            return int(route.get("weight", 0))
    return 0
