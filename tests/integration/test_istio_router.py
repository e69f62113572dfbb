"""The Istio router activities against a real sandbox API server (VirtualService, DestinationRule).

The sandbox serves Istio's CRDs as a cluster with Istio installed does; the activities reach it
through a kubeconfig and ``CustomObjectsApi``, and the audit log counts their writes.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client
from temporalio.testing import ActivityEnvironment

from activities.errors import ConfigurationError, Conflict, RoutesNotFound
from activities.router import IstioRouter, RouterActivities
from tests.integration.conftest import ApiSandbox, make_canary
from workflows.activity_api import CanaryRef, RoutesInput, SetWeightsInput

GROUP, VERSION = "networking.istio.io", "v1beta1"


@pytest.fixture
def api_client(apiserver_client: client.ApiClient) -> client.ApiClient:
    return apiserver_client


@pytest.fixture
def namespace(apiserver_namespace: str) -> str:
    return apiserver_namespace


@pytest.fixture
def router(api_client: client.ApiClient) -> RouterActivities:
    return RouterActivities(api_client)


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


def custom(api_client: client.ApiClient, plural: str, namespace: str, name: str) -> dict:
    response = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, _preload_content=False
    )
    result: dict = json.loads(response.data)
    return result


def weights(api_client: client.ApiClient, namespace: str) -> list[tuple[str, int]]:
    vs = custom(api_client, "virtualservices", namespace, "podinfo")
    return [(d["destination"]["host"], d["weight"]) for d in vs["spec"]["http"][0]["route"]]


def set_weights(env, router, namespace: str, primary: int, canary: int) -> None:
    ref = CanaryRef.of(make_canary(namespace))
    result = env.run(router.set_weights, SetWeightsInput(ref=ref, primary=primary, canary=canary))
    assert (result.primary, result.canary) == (primary, canary)


def test_reconcile_creates_the_virtual_service_and_destination_rules(
    env, router, api_client, namespace
) -> None:
    policy = {"tls": {"mode": "ISTIO_MUTUAL"}}
    canary = make_canary(namespace, retries={"attempts": 3}, timeout="5s", trafficPolicy=policy)

    env.run(router.reconcile_routes, RoutesInput(canary=canary))

    vs = custom(api_client, "virtualservices", namespace, "podinfo")
    assert vs["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "coalmine"
    assert vs["spec"]["hosts"] == ["podinfo", "app.istio.example.com"]
    assert vs["spec"]["gateways"] == ["public-gateway.istio-system.svc.cluster.local", "mesh"]
    (route,) = vs["spec"]["http"]
    assert route["retries"] == {"attempts": 3}
    assert route["timeout"] == "5s"
    assert weights(api_client, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    for host in ("podinfo-primary", "podinfo-canary"):
        rule = custom(api_client, "destinationrules", namespace, host)
        assert rule["spec"] == {"host": host, "trafficPolicy": policy}


def test_reconcile_twice_writes_nothing_the_second_time(
    env, router, api_sandbox: ApiSandbox, namespace
) -> None:
    canary = make_canary(namespace)
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    assert len(api_sandbox.writes(namespace)) == 3

    env.run(router.reconcile_routes, RoutesInput(canary=canary))

    assert len(api_sandbox.writes(namespace)) == 3


def test_set_weights_converges_and_reads_back(
    env, router, api_client, api_sandbox: ApiSandbox, namespace
) -> None:
    canary = make_canary(namespace)
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    before = len(api_sandbox.writes(namespace))

    set_weights(env, router, namespace, 80, 20)
    set_weights(env, router, namespace, 80, 20)

    assert api_sandbox.writes(namespace)[before:] == ["patch virtualservices/podinfo"]
    assert weights(api_client, namespace) == [("podinfo-primary", 80), ("podinfo-canary", 20)]
    read = env.run(router.get_weights, CanaryRef.of(canary))
    assert (read.primary, read.canary) == (80, 20)
    # Reconciling mid-rollout keeps the live weights and, with an unchanged spec, writes nothing.
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    assert len(api_sandbox.writes(namespace)) == before + 1
    assert weights(api_client, namespace) == [("podinfo-primary", 80), ("podinfo-canary", 20)]


def test_reconcile_applies_a_changed_spec_but_keeps_the_weights(
    env, router, api_client, namespace
) -> None:
    env.run(router.reconcile_routes, RoutesInput(canary=make_canary(namespace, timeout="5s")))
    set_weights(env, router, namespace, 60, 40)

    # timeout removed, retries added: the route changes, the weights stay.
    changed = make_canary(namespace, retries={"attempts": 2})
    env.run(router.reconcile_routes, RoutesInput(canary=changed))

    (route,) = custom(api_client, "virtualservices", namespace, "podinfo")["spec"]["http"]
    assert "timeout" not in route
    assert route["retries"] == {"attempts": 2}
    assert weights(api_client, namespace) == [("podinfo-primary", 60), ("podinfo-canary", 40)]


def test_reconcile_removes_a_dropped_traffic_policy(env, router, api_client, namespace) -> None:
    policy = {"tls": {"mode": "ISTIO_MUTUAL"}}
    env.run(
        router.reconcile_routes, RoutesInput(canary=make_canary(namespace, trafficPolicy=policy))
    )

    env.run(router.reconcile_routes, RoutesInput(canary=make_canary(namespace)))

    for host in ("podinfo-primary", "podinfo-canary"):
        assert custom(api_client, "destinationrules", namespace, host)["spec"] == {"host": host}


def test_set_weights_without_routes_is_a_non_retryable_error(env, router, namespace) -> None:
    with pytest.raises(RoutesNotFound) as raised:
        set_weights(env, router, namespace, 90, 10)
    assert raised.value.non_retryable
    with pytest.raises(RoutesNotFound):
        env.run(router.get_weights, CanaryRef.of(make_canary(namespace)))


def test_a_concurrent_write_is_a_retryable_conflict(
    env, router, api_sandbox: ApiSandbox, namespace
) -> None:
    env.run(router.reconcile_routes, RoutesInput(canary=make_canary(namespace)))
    api_sandbox.fault(verb="patch", resource="virtualservices", status=409, times=1)
    with pytest.raises(Conflict):
        set_weights(env, router, namespace, 90, 10)
    set_weights(env, router, namespace, 90, 10)  # the retry


def test_a_stale_resource_version_is_refused(
    api_client, api_sandbox: ApiSandbox, namespace
) -> None:
    router = IstioRouter(api_client)
    canary = make_canary(namespace)
    router.reconcile(canary)
    ref = CanaryRef.of(canary)
    # Our patch is held up in the server; meanwhile someone else rewrites the VirtualService.
    api_sandbox.fault(verb="patch", resource="virtualservices", delay_seconds=1.0, times=1)
    outcome: list[BaseException | None] = []

    def ours() -> None:
        try:
            router.set_routes(ref, 70, 30)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=ours)
    thread.start()
    time.sleep(0.3)
    api = client.CustomObjectsApi(api_client)
    vs = custom(api_client, "virtualservices", namespace, "podinfo")
    for destination in vs["spec"]["http"][0]["route"]:
        destination["weight"] = 50
    api.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, "virtualservices", "podinfo", vs
    )
    thread.join()

    assert isinstance(outcome[0], Conflict)  # not a lost update
    assert weights(api_client, namespace) == [("podinfo-primary", 50), ("podinfo-canary", 50)]


def test_finalize_removes_only_what_coalmine_created(api_client, namespace) -> None:
    router = IstioRouter(api_client)
    canary = make_canary(namespace)
    router.reconcile(canary)
    router.finalize(CanaryRef.of(canary))
    router.finalize(CanaryRef.of(canary))  # already gone: a no-op
    api = client.CustomObjectsApi(api_client)
    assert (
        api.list_namespaced_custom_object(GROUP, VERSION, namespace, "virtualservices")["items"]
        == []
    )
    assert (
        api.list_namespaced_custom_object(GROUP, VERSION, namespace, "destinationrules")["items"]
        == []
    )


def test_an_unknown_provider_fails_at_construction(api_client) -> None:
    with pytest.raises(ConfigurationError, match="'linkerd'"):
        RouterActivities(api_client, provider="linkerd")
