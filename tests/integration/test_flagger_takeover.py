"""Taking over a live service, and a Canary Flagger managed, on the real control plane.

The product's worker runs whole rollouts (as the ``coalmine`` ServiceAccount) while the test
watches from outside what users would see: the apex Service's EndpointSlices and requests through
the mesh to ``podinfo.<ns>``. Pods start slowly here (kwok's ready delay), so any step that points
the apex Service at pods that are not ready yet shows as a moment without a ready endpoint.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sandbox.runner import SandboxHandle
from sandbox.settings import ready_delay
from tests.conftest import Kubectl
from tests.integration.rollout_support import (
    GOOD,
    api_client,
    canary,
    image,
    read_status,
    replicas,
    rollout_worker,
    start,
    watch,
    weights,
)
from workflows.model import Phase

__all__ = ["api_client", "rollout_worker"]  # fixtures used by the tests below

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SLOW_START = 3.0
"""Seconds each pod takes from scheduling to Ready."""

LIVE_SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  selector: {{app: podinfo}}
  ports: [{{name: http, port: 9898, targetPort: 9898}}]
"""


def slow_podinfo(ns: str, image: str = "quay.io/stefanprodan/podinfo:1.4.0") -> dict[str, Any]:
    labels = {"app": "podinfo"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": ready_delay(SLOW_START)},
                "spec": {
                    "containers": [
                        {
                            "name": "podinfod",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 9898}],
                        }
                    ]
                },
            },
        },
    }


@dataclass
class Outage:
    """What users of the apex Service saw, sampled every 50 ms."""

    samples: int = 0
    without_endpoint: list[float] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)


def ready_endpoints(api: Any, ns: str, service: str) -> int:
    slices = k8s.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        ns, label_selector=f"kubernetes.io/service-name={service}"
    )
    return sum(
        1
        for s in slices.items
        for e in s.endpoints or []
        if e.conditions is not None and e.conditions.ready
    )


@contextmanager
def users(api: Any, sandbox: SandboxHandle, ns: str) -> Iterator[Outage]:
    """Sample the apex Service's ready endpoints and call it through the mesh until the end."""
    outage = Outage()
    stop = threading.Event()

    def sample() -> None:
        with httpx.Client(proxy=sandbox.mesh_url, timeout=5) as http:
            while not stop.is_set():
                now = time.monotonic()
                outage.samples += 1
                if ready_endpoints(api, ns, "podinfo") == 0:
                    outage.without_endpoint.append(now)
                response = http.get(f"http://podinfo.{ns}:9898/")
                if response.status_code != 200:
                    outage.failed_requests.append(f"{response.status_code} {response.text[:80]}")
                stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield outage
    finally:
        stop.set()
        thread.join(10)


def wait_available(kubectl: Kubectl, ns: str, name: str) -> None:
    kubectl.run("-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=60s")


async def test_first_initialization_never_leaves_the_apex_service_without_ready_pods(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_namespace: str,
    sandbox_cluster: SandboxHandle,
    api_client: Any,
) -> None:
    ns = sandbox_namespace
    k8s.AppsV1Api(api_client).create_namespaced_deployment(ns, slow_podinfo(ns))
    kubectl.apply(LIVE_SERVICE.format(ns=ns))
    wait_available(kubectl, ns, "podinfo")

    with users(api_client, sandbox_cluster, ns) as outage:
        await asyncio.sleep(0.5)  # serving before the Canary arrives
        handle = await start(dev_server_env, rollout_worker, canary(ns))
        await watch(handle, lambda _: None)
        await asyncio.sleep(1)  # and after, on the primary alone
    status = await read_status(handle)

    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert replicas(api_client, ns, "podinfo") == 0
    selector = k8s.CoreV1Api(api_client).read_namespaced_service("podinfo", ns).spec.selector
    assert selector == {"app": "podinfo-primary"}
    # The primary's pods took SLOW_START seconds; users never noticed.
    assert outage.samples > 2 * SLOW_START / 0.05 / 4
    assert outage.without_endpoint == []
    assert outage.failed_requests == []
    assert image(api_client, ns, "podinfo-primary") == "quay.io/stefanprodan/podinfo:1.4.0"


FLAGGER_OBJECTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo-primary, namespace: {ns}, labels: {{app: podinfo-primary}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: podinfo-primary}}}}
  template:
    metadata:
      labels: {{app: podinfo-primary}}
      annotations: {{flagger-id: 6b7e7b3c-0c43-4f4f-9c4e-2f0a1d6e5a11}}
    spec:
      containers:
      - name: podinfod
        image: quay.io/stefanprodan/podinfo:1.4.0
        ports: [{{name: http, containerPort: 9898}}]
---
apiVersion: v1
kind: Service
metadata: {{name: podinfo, namespace: {ns}, labels: {{app: podinfo}}}}
spec:
  selector: {{app: podinfo-primary}}
  ports: [{{name: http, port: 9898, targetPort: 9898, protocol: TCP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: podinfo-primary, namespace: {ns}, labels: {{app: podinfo-primary}}}}
spec:
  selector: {{app: podinfo-primary}}
  ports: [{{name: http, port: 9898, targetPort: 9898, protocol: TCP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: podinfo-canary, namespace: {ns}, labels: {{app: podinfo-canary}}}}
spec:
  selector: {{app: podinfo}}
  ports: [{{name: http, port: 9898, targetPort: 9898, protocol: TCP}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: podinfo, namespace: {ns}}}
spec:
  hosts: [podinfo]
  gateways: [mesh]
  http:
  - route:
    - destination: {{host: podinfo-primary}}
      weight: 100
    - destination: {{host: podinfo-canary}}
      weight: 0
"""


async def test_a_release_over_flaggers_objects_is_analysed_and_promoted(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_namespace: str,
    sandbox_cluster: SandboxHandle,
    api_client: Any,
) -> None:
    """What Flagger leaves between two releases (the target at zero, its primary serving), and a
    new image on the target: Coalmine adopts the primary and rolls the release out."""
    ns = sandbox_namespace
    kubectl.apply(FLAGGER_OBJECTS.format(ns=ns))
    target = slow_podinfo(ns, image=GOOD)
    target["spec"]["replicas"] = 0
    del target["spec"]["template"]["metadata"]["annotations"]
    k8s.AppsV1Api(api_client).create_namespaced_deployment(ns, target)
    wait_available(kubectl, ns, "podinfo-primary")

    handle = await start(dev_server_env, rollout_worker, canary(ns))
    phases: list[Phase] = []
    await watch(handle, lambda s: phases.append(s.phase))
    status = await read_status(handle)

    messages = [e.message for e in status.events]
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert f"Initialization done! podinfo.{ns}" not in messages
    assert any(m.startswith("New revision detected") for m in messages)
    assert Phase.PROGRESSING in phases
    assert f"Advance podinfo.{ns} canary weight 10" in messages
    assert image(api_client, ns, "podinfo-primary") == GOOD
    assert replicas(api_client, ns, "podinfo") == 0
    assert weights(api_client, ns) == {"podinfo-primary": 100, "podinfo-canary": 0}
