"""The Istio router activities on the real control plane (VirtualService, DestinationRule).

The cluster has Istio's CRDs installed, as one running Istio does. The activities run with the
worker's client (the ``coalmine`` ServiceAccount, held by the real authorizer to the shipped
ClusterRole); the test reads back and plays the other writers as the cluster admin, and the API
server's audit log counts the worker's writes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from kubernetes import client
from temporalio.testing import ActivityEnvironment

from activities.errors import ConfigurationError, Conflict, RoutesNotFound
from activities.router import IstioRouter, RouterActivities
from tests.conftest import WORKER_USER
from tests.integration.conftest import make_canary, verbs
from workflows.activity_api import CanaryRef, RoutesInput, SetWeightsInput

GROUP, VERSION = "networking.istio.io", "v1beta1"


@pytest.fixture
def namespace(sandbox_namespace: str) -> str:
    return sandbox_namespace


@pytest.fixture
def router(worker_client: client.ApiClient) -> RouterActivities:
    """The activities as the worker registers them: the ``coalmine`` ServiceAccount's client."""
    return RouterActivities(worker_client)


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


def custom(admin_client: client.ApiClient, plural: str, namespace: str, name: str) -> dict:
    response = client.CustomObjectsApi(admin_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, _preload_content=False
    )
    result: dict = json.loads(response.data)
    return result


def weights(admin_client: client.ApiClient, namespace: str) -> list[tuple[str, int]]:
    vs = custom(admin_client, "virtualservices", namespace, "podinfo")
    return [(d["destination"]["host"], d["weight"]) for d in vs["spec"]["http"][0]["route"]]


def set_weights(env, router, namespace: str, primary: int, canary: int) -> None:
    ref = CanaryRef.of(make_canary(namespace))
    result = env.run(router.set_weights, SetWeightsInput(ref=ref, primary=primary, canary=canary))
    assert (result.primary, result.canary) == (primary, canary)


def test_reconcile_creates_the_virtual_service_and_destination_rules(
    env, router, admin_client, namespace
) -> None:
    policy = {"tls": {"mode": "ISTIO_MUTUAL"}}
    canary = make_canary(namespace, retries={"attempts": 3}, timeout="5s", trafficPolicy=policy)

    env.run(router.reconcile_routes, RoutesInput(canary=canary))

    vs = custom(admin_client, "virtualservices", namespace, "podinfo")
    assert vs["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "coalmine"
    assert vs["spec"]["hosts"] == ["podinfo", "app.istio.example.com"]
    # Named gateways only: in-mesh callers are not routed to the canary (Flagger adds mesh
    # only when no gateway is named).
    assert vs["spec"]["gateways"] == ["public-gateway.istio-system.svc.cluster.local"]
    (route,) = vs["spec"]["http"]
    assert route["retries"] == {"attempts": 3}
    assert route["timeout"] == "5s"
    assert weights(admin_client, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]
    for host in ("podinfo-primary", "podinfo-canary"):
        rule = custom(admin_client, "destinationrules", namespace, host)
        assert rule["spec"] == {"host": host, "trafficPolicy": policy}


def test_reconcile_twice_writes_nothing_the_second_time(env, router, api_proxy, namespace) -> None:
    canary = make_canary(namespace)
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    first = api_proxy.writes(namespace)
    assert first == Counter(
        {
            "virtualservices/podinfo": 1,
            "destinationrules/podinfo-primary": 1,
            "destinationrules/podinfo-canary": 1,
        }
    )

    env.run(router.reconcile_routes, RoutesInput(canary=canary))

    assert api_proxy.writes(namespace) == first


def test_set_weights_converges_and_reads_back(
    env, router, admin_client, api_proxy, namespace
) -> None:
    canary = make_canary(namespace)
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    before = api_proxy.writes(namespace)

    set_weights(env, router, namespace, 80, 20)
    set_weights(env, router, namespace, 80, 20)

    after = api_proxy.writes(namespace)
    assert after - before == Counter({"virtualservices/podinfo": 1})
    assert verbs(api_proxy, namespace, "virtualservices/podinfo") == ["create", "patch"]
    assert weights(admin_client, namespace) == [("podinfo-primary", 80), ("podinfo-canary", 20)]
    read = env.run(router.get_weights, CanaryRef.of(canary))
    assert (read.primary, read.canary) == (80, 20)
    # Reconciling mid-rollout keeps the live weights and, with an unchanged spec, writes nothing.
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    assert api_proxy.writes(namespace) == after
    assert weights(admin_client, namespace) == [("podinfo-primary", 80), ("podinfo-canary", 20)]


def test_reconcile_applies_a_changed_spec_but_keeps_the_weights(
    env, router, admin_client, namespace
) -> None:
    env.run(router.reconcile_routes, RoutesInput(canary=make_canary(namespace, timeout="5s")))
    set_weights(env, router, namespace, 60, 40)

    # timeout removed, retries added: the route changes, the weights stay.
    changed = make_canary(namespace, retries={"attempts": 2})
    env.run(router.reconcile_routes, RoutesInput(canary=changed))

    (route,) = custom(admin_client, "virtualservices", namespace, "podinfo")["spec"]["http"]
    assert "timeout" not in route
    assert route["retries"] == {"attempts": 2}
    assert weights(admin_client, namespace) == [("podinfo-primary", 60), ("podinfo-canary", 40)]


def test_reconcile_removes_a_dropped_traffic_policy(env, router, admin_client, namespace) -> None:
    policy = {"tls": {"mode": "ISTIO_MUTUAL"}}
    env.run(
        router.reconcile_routes, RoutesInput(canary=make_canary(namespace, trafficPolicy=policy))
    )

    env.run(router.reconcile_routes, RoutesInput(canary=make_canary(namespace)))

    for host in ("podinfo-primary", "podinfo-canary"):
        assert custom(admin_client, "destinationrules", namespace, host)["spec"] == {"host": host}


def test_set_weights_without_routes_is_a_non_retryable_error(env, router, namespace) -> None:
    with pytest.raises(RoutesNotFound) as raised:
        set_weights(env, router, namespace, 90, 10)
    assert raised.value.non_retryable
    with pytest.raises(RoutesNotFound):
        env.run(router.get_weights, CanaryRef.of(make_canary(namespace)))


def test_a_concurrent_write_is_a_retryable_conflict(env, router, api_proxy, namespace) -> None:
    env.run(router.reconcile_routes, RoutesInput(canary=make_canary(namespace)))
    api_proxy.add_fault(
        verb="patch", resource="virtualservices", namespace=namespace, status=409, times=1
    )
    with pytest.raises(Conflict):
        set_weights(env, router, namespace, 90, 10)
    set_weights(env, router, namespace, 90, 10)  # the retry


def test_a_stale_resource_version_is_refused(
    worker_client, admin_client, api_proxy, namespace
) -> None:
    router = IstioRouter(worker_client)
    canary = make_canary(namespace)
    router.reconcile(canary)
    ref = CanaryRef.of(canary)
    # Our patch is held up on its way to the server; meanwhile someone else (the admin, straight
    # to the API server) rewrites the VirtualService.
    api_proxy.add_fault(
        verb="patch", resource="virtualservices", namespace=namespace, delay_seconds=1.0, times=1
    )
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
    api = client.CustomObjectsApi(admin_client)
    vs = custom(admin_client, "virtualservices", namespace, "podinfo")
    for destination in vs["spec"]["http"][0]["route"]:
        destination["weight"] = 50
    api.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, "virtualservices", "podinfo", vs
    )
    thread.join()

    assert isinstance(outcome[0], Conflict)  # not a lost update
    assert weights(admin_client, namespace) == [("podinfo-primary", 50), ("podinfo-canary", 50)]


def test_finalize_removes_only_what_coalmine_created(admin_client, namespace) -> None:
    # As the admin: finalize is no activity (no rollout calls it), and the worker's ClusterRole
    # grants no delete, so as the worker the API server would answer 403.
    router = IstioRouter(admin_client)
    canary = make_canary(namespace)
    router.reconcile(canary)
    router.finalize(CanaryRef.of(canary))
    router.finalize(CanaryRef.of(canary))  # already gone: a no-op
    api = client.CustomObjectsApi(admin_client)
    assert (
        api.list_namespaced_custom_object(GROUP, VERSION, namespace, "virtualservices")["items"]
        == []
    )
    assert (
        api.list_namespaced_custom_object(GROUP, VERSION, namespace, "destinationrules")["items"]
        == []
    )


def test_an_unknown_provider_fails_at_construction(worker_client) -> None:
    with pytest.raises(ConfigurationError, match="'linkerd'"):
        RouterActivities(worker_client, default_provider="linkerd")


def test_a_tcp_service_is_routed_by_a_weighted_tcp_route(
    env, router, admin_client, api_proxy, namespace
) -> None:
    # Flagger's isTcp: appProtocol tcp (any case) makes a tcp route, weighted like the http one;
    # the CRD's schema on the API server checks its shape.
    canary = make_canary(namespace, appProtocol="TCP", match=[{"port": 9898}])
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    set_weights_input = SetWeightsInput(ref=CanaryRef.of(canary), primary=70, canary=30)
    env.run(router.set_weights, set_weights_input)
    after = api_proxy.writes(namespace)

    vs = custom(admin_client, "virtualservices", namespace, "podinfo")
    assert "http" not in vs["spec"]
    assert vs["spec"]["tcp"] == [
        {
            "match": [{"port": 9898}],
            "route": [
                {"destination": {"host": "podinfo-primary"}, "weight": 70},
                {"destination": {"host": "podinfo-canary"}, "weight": 30},
            ],
        }
    ]
    read = env.run(router.get_weights, CanaryRef.of(canary))
    assert (read.primary, read.canary) == (70, 30)
    # The same weights again, a reconcile mid-rollout, taking a mirror off: nothing to write.
    env.run(router.set_weights, set_weights_input)
    env.run(router.reconcile_routes, RoutesInput(canary=canary))
    assert api_proxy.writes(namespace) == after
    # Back to HTTP: the tcp route goes, an http one at 100/0 comes.
    env.run(router.reconcile_routes, RoutesInput(canary=make_canary(namespace)))
    vs = custom(admin_client, "virtualservices", namespace, "podinfo")
    assert "tcp" not in vs["spec"]
    assert weights(admin_client, namespace) == [("podinfo-primary", 100), ("podinfo-canary", 0)]


def test_weights_and_mirror_are_one_read_and_one_write(
    env, router, admin_client, api_proxy, namespace
) -> None:
    # Flagger's SetRoutes writes the weights and the mirror at once: one read of the
    # VirtualService and one patch per weight change, with or without a mirror.
    canary = make_canary(namespace)
    ref = CanaryRef.of(canary)
    env.run(router.reconcile_routes, RoutesInput(canary=canary))

    def requests(verb: str) -> int:
        entries = api_proxy.audit(namespace=namespace, resource="virtualservices", user=WORKER_USER)
        return sum(1 for entry in entries if entry["verb"] == verb)

    def route() -> dict:
        return custom(admin_client, "virtualservices", namespace, "podinfo")["spec"]["http"][0]

    gets, patches = requests("get"), requests("patch")
    mirrored = SetWeightsInput(ref=ref, primary=100, canary=0, mirrored=True, mirror_weight=40)
    env.run(router.set_weights, mirrored)
    assert (requests("get") - gets, requests("patch") - patches) == (1, 1)
    assert route()["mirror"] == {"host": "podinfo-canary"}
    assert route()["mirrorPercentage"] == {"value": 40.0}

    # Already so: read, nothing written.
    env.run(router.set_weights, mirrored)
    assert (requests("get") - gets, requests("patch") - patches) == (2, 1)

    # The mirror comes off in the same write that moves the traffic.
    env.run(router.set_weights, SetWeightsInput(ref=ref, primary=0, canary=100))
    assert (requests("get") - gets, requests("patch") - patches) == (3, 2)
    assert "mirror" not in route()
    assert "mirrorPercentage" not in route()
    assert weights(admin_client, namespace) == [("podinfo-primary", 0), ("podinfo-canary", 100)]
    assert verbs(api_proxy, namespace, "virtualservices/podinfo") == ["create", "patch", "patch"]
