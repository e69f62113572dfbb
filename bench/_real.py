"""The real stack for one benchmark process: sandbox, Temporal dev server, in-process worker.

The worker is the product's (``build_worker`` with the product's activity classes), configured
as the integration tests configure it; it reaches the sandbox only through its kubeconfig,
Prometheus URL and mesh proxy. Everything is stopped on the way out, errors included.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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


@dataclass
class CpuMeter:
    """The thread CPU seconds of each call of the worker's synchronous activities, and of each
    check ``analyse_step`` runs on its threads (``check_metric``/``call_webhook`` by name):
    what the activity code itself costs, apart from the SDK and the event loop."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name].append(time.thread_time() - began)

        return timed

    def install(self, objects: list[object]) -> list[Callable[..., Any]]:
        """The activity methods of ``objects``, the synchronous ones timed (``functools.wraps``
        keeps the activity definition, and the worker calls what it is given)."""
        for obj in objects:
            metrics = getattr(obj, "metrics", None)
            webhooks = getattr(obj, "webhooks", None)
            if metrics is not None and webhooks is not None:  # AnalysisActivities
                metrics.check = self.timed("check_metric", metrics.check)
                webhooks.attempt = self.timed("call_webhook", webhooks.attempt)
        methods = activity_methods(*objects)
        return [m if inspect.iscoroutinefunction(m) else self.timed(m.__name__, m) for m in methods]


@contextlib.asynccontextmanager
async def real_world(
    *, activity_threads: int = 100, cpu: CpuMeter | None = None
) -> AsyncIterator[World]:
    with sandbox() as handle:
        async with dev_server() as server:
            api_client = build_api_client(kubeconfig=str(handle.kubeconfig), pool_size=32)
            queue = f"bench-{uuid.uuid4().hex[:6]}"
            settings = Settings(temporal=TemporalSettings(task_queue=queue))
            analysis = AnalysisSettings(
                prometheus_url=handle.prometheus_url, http_proxy=handle.mesh_url
            )
            executor = ThreadPoolExecutor(activity_threads, thread_name_prefix="bench-step")
            objects = product_activities(api_client, settings, analysis=analysis, executor=executor)
            activities = cpu.install(objects) if cpu is not None else activity_methods(*objects)
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
