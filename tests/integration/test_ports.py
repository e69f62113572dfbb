"""The Services' ports on the real control plane: ``service.portDiscovery``, a user's own
Service's other ports, and a TCP service's port, as the worker's ServiceAccount makes them.

The API server validates every Service written (names, duplicate ports), so what Flagger's
getPorts rules produce is checked by Kubernetes itself, not only by comparing dicts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from kubernetes import client
from temporalio.testing import ActivityEnvironment

from activities.kubernetes import KubernetesActivities
from activities.router import RouterActivities
from tests.conftest import ApiProxy
from tests.integration.conftest import create_podinfo, make_canary, podinfo_deployment, read
from workflows.activity_api import InitializeInput, RoutesInput

SERVICES = ("podinfo", "podinfo-primary", "podinfo-canary")


@pytest.fixture
def namespace(sandbox_namespace: str) -> str:
    return sandbox_namespace


@pytest.fixture
def k8s(worker_client: client.ApiClient) -> KubernetesActivities:
    return KubernetesActivities(worker_client, poll_interval=0.05)


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


def with_more_ports() -> dict[str, Any]:
    """podinfo's pod with a metrics and a gRPC port, an unnamed port in a second container and
    the mesh's proxy beside it."""
    podinfod = podinfo_deployment()["spec"]["template"]["spec"]["containers"][0]
    podinfod["ports"] += [
        {"name": "http-metrics", "containerPort": 9797},
        {"name": "grpc", "containerPort": 9999},
    ]
    cache = {"name": "cache", "image": "redis:7", "ports": [{"containerPort": 6379}]}
    proxy = {
        "name": "istio-proxy",
        "image": "istio/proxyv2:1.32.0",
        "ports": [{"name": "http-envoy-prom", "containerPort": 15090}],
    }
    return {"containers": [podinfod, cache, proxy]}


def ports(admin_client: client.ApiClient, namespace: str, name: str) -> list[tuple[Any, ...]]:
    service = read(admin_client, "service", namespace, name)
    return [
        (p.get("name"), p["port"], p["targetPort"], p["protocol"], p.get("appProtocol"))
        for p in service["spec"]["ports"]
    ]


def initialize(env: ActivityEnvironment, k8s: KubernetesActivities, namespace: str, **service):
    env.run(k8s.initialize, InitializeInput(canary=make_canary(namespace, **service)))


def test_port_discovery_gives_the_three_services_every_container_port(
    env, k8s, worker_client, admin_client, namespace
) -> None:
    create_podinfo(admin_client, namespace, pod=with_more_ports())

    initialize(env, k8s, namespace, portDiscovery=True)

    expected = [
        ("http", 9898, 9898, "TCP", None),
        ("tcp-cache-0", 6379, 6379, "TCP", None),
        ("http-metrics", 9797, 9797, "TCP", None),
        ("grpc", 9999, 9999, "TCP", None),
    ]
    for name in SERVICES:
        assert ports(admin_client, namespace, name) == expected, name
    # Through the named gateway, the route names the port among several (Flagger's
    # makeDestination with portDiscovery).
    router = RouterActivities(worker_client)
    env.run(router.reconcile_routes, RoutesInput(canary=make_canary(namespace, portDiscovery=True)))
    vs = client.CustomObjectsApi(admin_client).get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", namespace, "virtualservices", "podinfo"
    )
    destinations = [d["destination"] for d in vs["spec"]["http"][0]["route"]]
    assert destinations == [
        {"host": "podinfo-primary", "port": {"number": 9898}},
        {"host": "podinfo-canary", "port": {"number": 9898}},
    ]

    # Turned off again: Coalmine's own Services go back to the one port.
    initialize(env, k8s, namespace)
    for name in SERVICES:
        assert ports(admin_client, namespace, name) == expected[:1], name


def test_a_users_service_keeps_its_other_ports(
    env, k8s, admin_client, api_proxy: ApiProxy, namespace
) -> None:
    create_podinfo(admin_client, namespace, pod=with_more_ports())
    client.CoreV1Api(admin_client).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "podinfo"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "podinfo"},
                "ports": [
                    {"name": "web", "port": 9898, "targetPort": 9898},
                    {"name": "metrics", "port": 9797, "targetPort": 9797, "nodePort": 30797},
                    {"name": "grpc", "port": 9999, "targetPort": "grpc"},
                ],
            },
        },
    )

    initialize(env, k8s, namespace)

    apex = read(admin_client, "service", namespace, "podinfo")
    assert apex["spec"]["selector"] == {"app": "podinfo-primary"}
    # 9898 is the Canary's port now (its name given way); the other two stay as written,
    # their node port too.
    assert [(p["name"], p["port"], p["targetPort"]) for p in apex["spec"]["ports"]] == [
        ("http", 9898, 9898),
        ("metrics", 9797, 9797),
        ("grpc", 9999, "grpc"),
    ]
    assert apex["spec"]["ports"][1]["nodePort"] == 30797
    assert ports(admin_client, namespace, "podinfo-canary") == [("http", 9898, 9898, "TCP", None)]

    # Kept ports are not drift: a second initialization writes nothing.
    before = api_proxy.writes(namespace)
    initialize(env, k8s, namespace)
    assert api_proxy.writes(namespace) - before == Counter()


def test_a_tcp_service_port_carries_its_app_protocol(env, k8s, admin_client, namespace) -> None:
    create_podinfo(admin_client, namespace)

    initialize(env, k8s, namespace, appProtocol="tcp")

    for name in SERVICES:
        assert ports(admin_client, namespace, name) == [("http", 9898, 9898, "TCP", "tcp")]
