"""Every traffic-router provider end to end on the local cluster, with Flagger's own tutorials.

The Gateway API tutorial (``gatewayapi-*.yaml``: its Gateway, metric templates and Canary) and the
Kubernetes Blue/Green tutorial (``kubernetes-canary.yaml``), with Flagger's podinfo
(``kubernetes-podinfo.yaml``: the Deployment and HPA both apply), are kept verbatim in
tests/data/flagger-tutorials/ but for a shorter analysis interval. Each runs a promotion and a
rollback through the product's worker (``rollout_support``), whose cluster-wide provider is
``gatewayapi:v1`` here, as the Gateway API tutorial installs Flagger with
``meshProvider=gatewayapi:v1``: the Gateway API Canary names no provider and gets it; the
Kubernetes one names ``provider: kubernetes``, which wins.

What makes them real on the local cluster: the mesh routes the load tester's requests to
``gateway-istio.istio-ingress`` (the Gateway's address, as Istio deploys it) by the HTTPRoute the
worker writes, and reports them as Istio's gateway would (``reporter="source"``, which the
tutorial's metric templates read); podinfo's own ``http_request_duration_seconds`` reaches
Prometheus by the pod annotations (the kubernetes provider's builtin checks).

A failing release is made as the tutorials make one: HTTP 500s asked of the canary
(``/status/500``) by the load tester's identity while the rollout runs, so the rollback comes from
the metric checks, not from the smoke test. Every scenario starts on a clean namespace and a clean
rate window (the tutorials' namespace ``test`` is shared).

That every activity of a rollout used the Canary's provider is read from the real API server's
audit log (what the worker touched) and, for a Canary that names its provider, from the activity
inputs in the workflow history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.analysis.templates import TemplateModel, render
from activities.router import provider_for
from sandbox.runner import SandboxHandle
from tests.conftest import WORKER_USER, ApiProxy, Kubectl
from tests.integration.rollout_support import (
    api_client,
    image,
    read_status,
    replicas,
    rollout_worker,
    start,
    watch,
)
from workflows.model import Phase, RolloutStatus
from workflows.spec import Canary, Strategy, parse_canary

__all__ = ["api_client", "rollout_worker"]  # fixtures used by the tests below

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MESH_PROVIDER = "gatewayapi:v1"
"""The worker's --mesh-provider (read by ``rollout_worker``)."""

TUTORIALS = Path(__file__).resolve().parents[1] / "data" / "flagger-tutorials"
NS = "test"  # the tutorials' namespace, where the sandbox's load tester runs
ROUTE_KINDS = {"virtualservices", "destinationrules", "httproutes"}
FIRST, GOOD, BAD = (f"ghcr.io/stefanprodan/podinfo:6.0.{n}" for n in range(3))


def tutorial(name: str) -> str:
    return (TUTORIALS / name).read_text()


def tutorial_canary(name: str) -> Canary:
    # The tests' analysis intervals are below Flagger's 10 s floor (the files say so).
    return parse_canary(yaml.safe_load(tutorial(name)), min_interval_seconds=1)


GATEWAY_CANARY, KUBERNETES_CANARY = "gatewayapi-canary.yaml", "kubernetes-canary.yaml"
GATEWAY_AB = "gatewayapi-ab-testing.yaml"


def http_route(api: Any) -> dict[str, Any]:
    route: dict[str, Any] = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NS, "httproutes", "podinfo"
    )
    return route


def route_weights(api: Any) -> dict[str, int]:
    (rule,) = http_route(api)["spec"]["rules"]
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


def apex_selector(api: Any) -> dict[str, str]:
    return dict(k8s.CoreV1Api(api).read_namespaced_service("podinfo", NS).spec.selector)


LEFTOVERS = [
    "canary/podinfo",
    *(
        f"{kind}/{name}"
        for kind in ("deployment", "hpa")
        for name in ("podinfo", "podinfo-primary")
    ),
    *(f"service/{name}" for name in ("podinfo", "podinfo-primary", "podinfo-canary")),
    "httproute/podinfo",
    "virtualservice/podinfo",
    "destinationrule/podinfo-primary",
    "destinationrule/podinfo-canary",
]
"""Whatever an earlier podinfo in the namespace left (another test's, another provider's)."""


async def initialize(
    env: WorkflowEnvironment,
    worker: Worker,
    kubectl: Kubectl,
    sandbox: SandboxHandle,
    canary_file: str,
    api: Any,
) -> Canary:
    """The tutorials' bootstrap on a clean namespace: Flagger's podinfo applied, the Canary
    applied and initialized (the primary serves 6.0.0, the canary is at zero)."""
    kubectl.run("-n", NS, "delete", *LEFTOVERS, "--ignore-not-found", "--wait=true")
    forget_the_namespaces_series(sandbox)
    kubectl.run("-n", NS, "apply", "-f", "-", stdin=tutorial("kubernetes-podinfo.yaml"))
    kubectl.apply(tutorial(canary_file))
    spec = tutorial_canary(canary_file)
    handle = await start(env, worker, spec)
    await watch(handle, lambda _: None)
    status = await read_status(handle)
    assert status.phase == Phase.SUCCEEDED, status.model_dump_json(indent=1)
    assert image(api, NS, "podinfo-primary") == FIRST
    assert replicas(api, NS, "podinfo") == 0
    return spec


def release(kubectl: Kubectl, tag: str) -> None:
    """A new revision, as the tutorials make one: ``kubectl set image``."""
    kubectl.run("-n", NS, "set", "image", "deployment/podinfo", f"podinfod={tag}")


async def rolled_back_under_errors(
    sandbox: SandboxHandle, handle: WorkflowHandle[Any, Any]
) -> WorkflowFailureError:
    """Wait for the rollout to fail while HTTP 500s are generated as the tutorials do
    ("exec into the load tester pod … ``watch curl http://podinfo-canary.test:9898/status/500``"):
    requests from the load tester's identity to the canary's ``/status/500``, until the rollout
    ends. The smoke test (``/token``) still passes; the canary's metrics do not."""
    done = asyncio.Event()
    as_tester = sandbox.mesh_url.replace("://", f"://flagger-loadtester:{NS}@")

    async def curl_loop() -> None:
        async with httpx.AsyncClient(proxy=as_tester, timeout=5, trust_env=False) as http:
            while not done.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    await http.get(f"http://podinfo-canary.{NS}:9898/status/500")
                await asyncio.sleep(0.05)

    errors = asyncio.create_task(curl_loop())
    try:
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    finally:
        done.set()
        await errors
    return failure.value


def forget_the_namespaces_series(sandbox: SandboxHandle) -> None:
    """Drop every series of the namespace from Prometheus: the tutorials share namespace test
    (with other modules' tutorials too), and a scenario's failures must not fall into the next
    one's one-minute rate window."""
    matches = ['{kubernetes_namespace="test"}', '{destination_workload_namespace="test"}']
    response = httpx.post(
        f"{sandbox.prometheus_url}/api/v1/admin/tsdb/delete_series",
        params=[("match[]", m) for m in matches],
        timeout=10,
        trust_env=False,
    )
    assert response.status_code == 204, response.text


@pytest.fixture(autouse=True)
def clean_window(sandbox_cluster: SandboxHandle) -> Iterator[None]:
    yield
    forget_the_namespaces_series(sandbox_cluster)


def builtin_value(sandbox: SandboxHandle, provider: str, metric: str) -> float:
    """A provider's builtin query for podinfo in the namespace, over the last minute, now."""
    model = TemplateModel(
        name="podinfo", namespace=NS, target="podinfo", service="podinfo", interval="1m"
    )
    query = render(provider_for(provider).queries[metric], model)
    answer = httpx.get(
        f"{sandbox.prometheus_url}/api/v1/query", params={"query": query}, trust_env=False
    ).json()
    (sample,) = answer["data"]["result"]
    return float(sample["value"][1])


def worker_kinds(api_proxy: ApiProxy, since: float) -> dict[str, set[str]]:
    """Route kinds → verbs the worker used on them in the namespace since ``since``."""
    used: dict[str, set[str]] = {}
    for entry in api_proxy.audit(namespace=NS, user=WORKER_USER):
        if entry["time"] >= since and entry["resource"] in ROUTE_KINDS | {"services"}:
            used.setdefault(entry["resource"], set()).add(entry["verb"])
    return used


# --- Gateway API ---------------------------------------------------------------------------------

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(scope="module")
def gateway(kubectl: Kubectl, sandbox_cluster: SandboxHandle) -> Iterator[None]:
    """The tutorial's Gateway and metric templates, in their namespaces; and the worker's
    environment as the local stack gives it (``HTTP_PROXY`` the mesh, loopback excluded), so the
    templates' ``http://prometheus.istio-system:9090`` resolves as a cluster name does."""
    for namespace in ("istio-ingress", "flagger-system"):
        kubectl.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n")
    kubectl.apply(tutorial("gatewayapi-gateway.yaml"))
    kubectl.apply(tutorial("gatewayapi-metric-templates.yaml"))
    saved = {name: os.environ.get(name) for name in PROXY_VARIABLES}
    os.environ.update({name: sandbox_cluster.env[name] for name in PROXY_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def through_the_gateway(sandbox: SandboxHandle, **headers: str) -> str:
    """One request as the tutorial makes them: to the Gateway's address, Host www.example.com."""
    with httpx.Client(proxy=sandbox.mesh_url, timeout=10, trust_env=False) as http:
        response = http.get(
            "http://gateway-istio.istio-ingress/",
            headers={"Host": "www.example.com", **headers},
        )
    assert response.status_code == 200, response.text
    version: str = response.json()["version"]
    return version


async def test_gateway_api_tutorial_promotes_through_httproute_weights(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_cluster: SandboxHandle,
    api_proxy: ApiProxy,
    api_client: Any,
    gateway: None,
) -> None:
    since = time.time()
    spec = await initialize(
        dev_server_env, rollout_worker, kubectl, sandbox_cluster, GATEWAY_CANARY, api_client
    )
    assert spec.spec.provider is None  # the worker's default routes it
    route = http_route(api_client)
    (parent,) = route["spec"]["parentRefs"]  # the API server adds group and kind
    assert (parent["name"], parent["namespace"]) == ("gateway", "istio-ingress")
    assert route["spec"]["hostnames"] == ["www.example.com"]
    assert route_weights(api_client) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert through_the_gateway(sandbox_cluster) == "6.0.0"

    release(kubectl, GOOD)
    handle = await start(dev_server_env, rollout_worker, spec)
    weights: list[int] = []

    def seen(status: RolloutStatus) -> None:
        if status.phase == Phase.PROGRESSING:
            weights.append(route_weights(api_client)["podinfo-canary"])

    await watch(handle, seen)
    final = await read_status(handle)
    assert final.phase == Phase.SUCCEEDED, final.model_dump_json(indent=1)
    # The HTTPRoute carried the steps, and the tutorial's Istio-reporter templates read the
    # canary's traffic through the gateway.
    assert {10, 50} <= set(weights), weights
    assert final.metrics["error-rate"].value is not None
    assert final.metrics["error-rate"].value <= 1
    # The provider's builtin check (Flagger's HTTP observer) reads podinfo's own metrics of the
    # canary's pods, which the gateway's traffic reached.
    assert builtin_value(sandbox_cluster, "gatewayapi:v1", "request-success-rate") == 100
    assert image(api_client, NS, "podinfo-primary") == GOOD
    assert route_weights(api_client) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert replicas(api_client, NS, "podinfo") == 0
    assert through_the_gateway(sandbox_cluster) == "6.0.1"

    # Every routing call of both runs went to the HTTPRoute; no VirtualService or
    # DestinationRule was read or written, and the apex Service's selector was left alone.
    used = worker_kinds(api_proxy, since)
    assert {"get", "create", "patch"} <= used["httproutes"], used
    assert not used.keys() & {"virtualservices", "destinationrules"}, used
    assert "patch" not in used.get("services", set()), used


async def test_gateway_api_ab_testing_tutorial_routes_the_insiders_then_promotes(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_cluster: SandboxHandle,
    api_client: Any,
    gateway: None,
) -> None:
    """The tutorial's "A/B Testing" Canary: Firefox users and insiders (by cookie) reach the
    canary through a rule of the HTTPRoute of their own, everybody else stays on the primary."""
    spec = await initialize(
        dev_server_env, rollout_worker, kubectl, sandbox_cluster, GATEWAY_AB, api_client
    )
    assert spec.spec.analysis.strategy == Strategy.AB_TESTING
    release(kubectl, GOOD)
    handle = await start(dev_server_env, rollout_worker, spec)
    answers: list[tuple[str, str, str]] = []

    def seen(status: RolloutStatus) -> None:
        if status.phase == Phase.PROGRESSING and status.iterations >= 2 and not answers:
            answers.append(
                (
                    through_the_gateway(sandbox_cluster, Cookie="type=insider"),
                    through_the_gateway(sandbox_cluster, **{"User-Agent": "Mozilla Firefox/140"}),
                    through_the_gateway(sandbox_cluster),
                )
            )

    await watch(handle, seen)
    final = await read_status(handle)
    assert final.phase == Phase.SUCCEEDED, final.model_dump_json(indent=1)
    assert answers == [("6.0.1", "6.0.1", "6.0.0")]  # insiders and Firefox on the canary
    assert final.canary_weight == 0  # no share of everyone's traffic moved, as Flagger's
    matched, everyone = http_route(api_client)["spec"]["rules"]
    assert {ref["name"]: ref["weight"] for ref in matched["backendRefs"]} == {
        "podinfo-primary": 100,
        "podinfo-canary": 0,
    }
    assert [ref["name"] for ref in everyone["backendRefs"]] == ["podinfo-primary"]
    assert image(api_client, NS, "podinfo-primary") == GOOD
    assert through_the_gateway(sandbox_cluster) == "6.0.1"


async def test_gateway_api_tutorial_rolls_back_a_failing_canary(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_cluster: SandboxHandle,
    api_client: Any,
    gateway: None,
) -> None:
    spec = await initialize(
        dev_server_env, rollout_worker, kubectl, sandbox_cluster, GATEWAY_CANARY, api_client
    )
    release(kubectl, BAD)
    handle = await start(dev_server_env, rollout_worker, spec)
    failure = await rolled_back_under_errors(sandbox_cluster, handle)
    assert "failed checks threshold reached 5" in str(failure.cause)
    status = await read_status(handle)
    assert status.phase == Phase.FAILED
    dump = status.model_dump_json(indent=1)
    assert {c.source for c in status.failed_check_history} == {"error-rate"}, dump
    assert image(api_client, NS, "podinfo-primary") == FIRST  # never touched
    assert route_weights(api_client) == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert replicas(api_client, NS, "podinfo") == 0
    assert through_the_gateway(sandbox_cluster) == "6.0.0"


# --- Kubernetes (Blue/Green, no mesh) --------------------------------------------------------


async def activity_providers(handle: WorkflowHandle[Any, Any]) -> dict[str, set[str | None]]:
    """Activity type → the providers its inputs carried (routing activities only)."""
    found: dict[str, set[str | None]] = {}
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attributes = event.activity_task_scheduled_event_attributes
        name = attributes.activity_type.name
        data = json.loads(attributes.input.payloads[0].data)
        if not isinstance(data, dict):
            continue
        ref = data.get("ref") or (data if "provider" in data else None)
        if ref is not None:
            found.setdefault(name, set()).add(ref.get("provider"))
        elif isinstance(data.get("canary"), dict) and "spec" in data["canary"]:
            found.setdefault(name, set()).add(data["canary"]["spec"].get("provider"))
    return found


async def test_kubernetes_blue_green_tutorial_promotes_by_the_service_selector(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_cluster: SandboxHandle,
    api_proxy: ApiProxy,
    api_client: Any,
) -> None:
    spec = await initialize(
        dev_server_env, rollout_worker, kubectl, sandbox_cluster, KUBERNETES_CANARY, api_client
    )
    assert spec.spec.provider == "kubernetes"  # its own, over the worker's gatewayapi:v1
    primary_pods = apex_selector(api_client)
    assert primary_pods == {"app": "podinfo-primary"}

    release(kubectl, GOOD)
    since = time.time()
    handle = await start(dev_server_env, rollout_worker, spec)
    selectors: list[dict[str, str]] = []
    iterations: list[int] = []

    def seen(status: RolloutStatus) -> None:
        selectors.append(apex_selector(api_client))
        iterations.append(status.iterations)

    await watch(handle, seen)
    final = await read_status(handle)
    assert final.phase == Phase.SUCCEEDED, final.model_dump_json(indent=1)
    assert max(iterations) >= 10  # all ten passed before the switch
    # Users stayed on the primary's pods while the canary was analysed through podinfo-canary;
    # the builtin checks read podinfo's own metrics of the canary's pods.
    assert final.metrics["request-success-rate"].value is not None
    assert final.metrics["request-success-rate"].value >= 99
    assert image(api_client, NS, "podinfo-primary") == GOOD
    assert apex_selector(api_client) == primary_pods
    assert replicas(api_client, NS, "podinfo") == 0

    # Every activity that routes carried the Canary's provider, and the worker touched no
    # routing object of another provider: only Services.
    providers = await activity_providers(handle)
    assert {"reconcile_routes", "set_weights"} <= providers.keys(), providers
    assert set().union(*providers.values()) == {"kubernetes"}, providers
    used = worker_kinds(api_proxy, since)
    assert not used.keys() & ROUTE_KINDS, used


async def test_kubernetes_blue_green_tutorial_rolls_back_a_failing_canary(
    dev_server_env: WorkflowEnvironment,
    rollout_worker: Worker,
    kubectl: Kubectl,
    sandbox_cluster: SandboxHandle,
    api_client: Any,
) -> None:
    spec = await initialize(
        dev_server_env, rollout_worker, kubectl, sandbox_cluster, KUBERNETES_CANARY, api_client
    )
    release(kubectl, BAD)
    handle = await start(dev_server_env, rollout_worker, spec)
    failure = await rolled_back_under_errors(sandbox_cluster, handle)
    assert "failed checks threshold reached 2" in str(failure.cause)
    status = await read_status(handle)
    assert status.phase == Phase.FAILED
    dump = status.model_dump_json(indent=1)
    assert {c.source for c in status.failed_check_history} == {"request-success-rate"}, dump
    assert image(api_client, NS, "podinfo-primary") == FIRST
    assert apex_selector(api_client) == {"app": "podinfo-primary"}
    assert replicas(api_client, NS, "podinfo") == 0
