"""The Services' ports: the main one, ``service.portDiscovery`` as Flagger's getPorts, and the
ports a user's own Service keeps (pure, no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from activities.errors import InvalidSpec
from activities.kubernetes.objects import carry_service, services
from activities.kubernetes.ports import discovered_ports
from tests import canaries
from workflows.spec import Canary

Obj = dict[str, Any]


def canary(**service: Any) -> Canary:
    return canaries.canary(service=service)


def target(*containers: Obj) -> Obj:
    return {
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"template": {"spec": {"containers": list(containers)}}},
    }


PODINFO = target(
    {
        "name": "podinfod",
        "ports": [
            {"name": "http", "containerPort": 9898},
            {"name": "http-metrics", "containerPort": 9797},
            {"name": "grpc", "containerPort": 9999},
        ],
    },
    {"name": "istio-proxy", "ports": [{"name": "http-envoy-prom", "containerPort": 15090}]},
    {"name": "envoy", "ports": [{"containerPort": 15000}]},
    {"name": "cache", "ports": [{"name": "admin", "containerPort": 8081}, {"containerPort": 8080}]},
)


def names_and_ports(service: Obj) -> list[tuple[str, int, Any]]:
    return [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]]


def test_port_discovery_gives_every_service_every_container_port() -> None:
    apex, primary, canary_service = services(canary(portDiscovery=True), "app", "podinfo", PODINFO)
    # The main port first; then every other container port by number, the mesh's proxies left
    # out, an unnamed port named tcp-<container>-<index>, as Flagger names it.
    expected = [
        ("http", 9898, 9898),
        ("tcp-cache-1", 8080, 8080),
        ("admin", 8081, 8081),
        ("http-metrics", 9797, 9797),
        ("grpc", 9999, 9999),
    ]
    for service in (apex, primary, canary_service):
        assert names_and_ports(service) == expected
        assert {p["protocol"] for p in service["spec"]["ports"]} == {"TCP"}
    assert canary_service["spec"]["selector"] == {"app": "podinfo"}


def test_without_port_discovery_one_port() -> None:
    for service in services(canary(), "app", "podinfo", PODINFO):
        assert names_and_ports(service) == [("http", 9898, 9898)]


def test_app_protocol_goes_on_the_main_port_only() -> None:
    apex = services(canary(portDiscovery=True, appProtocol="http"), "app", "podinfo", PODINFO)[0]
    assert apex["spec"]["ports"][0]["appProtocol"] == "http"
    assert all("appProtocol" not in p for p in apex["spec"]["ports"][1:])


def test_the_main_port_is_found_by_target_port_name_or_number() -> None:
    # targetPort by name: the container port of that name is the main one, whatever its number.
    by_name = canary(port=80, targetPort="http", portDiscovery=True)
    assert [p["name"] for p in discovered_ports(by_name, PODINFO)] == [
        "tcp-cache-1",
        "admin",
        "http-metrics",
        "grpc",
    ]
    # targetPort by number: that container port, not service.port, is left out.
    by_number = canary(port=80, targetPort=9797, portName="prom", portDiscovery=True)
    found = {p["name"]: p["port"] for p in discovered_ports(by_number, PODINFO)}
    assert "http-metrics" not in found
    assert found["http"] == 9898


def test_a_discovered_port_that_clashes_is_refused_with_the_fix() -> None:
    clash = target({"name": "app", "ports": [{"name": "http", "containerPort": 8080}]})
    with pytest.raises(InvalidSpec, match=r"portDiscovery.*set spec\.service\.targetPort"):
        services(canary(portDiscovery=True), "app", "podinfo", clash)
    twice = target(
        {"name": "a", "ports": [{"name": "one", "containerPort": 7000}]},
        {"name": "b", "ports": [{"name": "two", "containerPort": 7000}]},
    )
    with pytest.raises(InvalidSpec, match="exposes port 7000 twice"):
        services(canary(portDiscovery=True), "app", "podinfo", twice)


def live_service(ports: list[Obj], **meta: Any) -> Obj:
    return {"metadata": {"name": "podinfo", "labels": {}, **meta}, "spec": {"ports": ports}}


USERS_PORTS = [
    {"name": "web", "port": 9898, "targetPort": 9898, "protocol": "TCP"},
    {"name": "metrics", "port": 9797, "targetPort": "metrics", "protocol": "TCP"},
    {"name": "admin", "port": 8081, "targetPort": 8081, "protocol": "TCP", "nodePort": 30081},
    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
]


def test_a_users_service_keeps_its_other_ports() -> None:
    desired = services(canary(), "app", "podinfo", PODINFO)[0]
    carry_service(desired, live_service(USERS_PORTS))
    # 9898 (same number) and http (same name) give way to the wanted port; the rest stay as
    # they are, node port included.
    assert desired["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 9898, "targetPort": 9898},
        USERS_PORTS[1],
        USERS_PORTS[2],
    ]


def test_generated_services_get_exactly_the_wanted_ports() -> None:
    coalmines = live_service(USERS_PORTS, labels={"app.kubernetes.io/managed-by": "coalmine"})
    flaggers = live_service(
        USERS_PORTS,
        ownerReferences=[{"kind": "Canary", "name": "podinfo", "controller": True}],
    )
    for live in (coalmines, flaggers):
        desired = services(canary(), "app", "podinfo", PODINFO)[0]
        carry_service(desired, live)
        assert names_and_ports(desired) == [("http", 9898, 9898)]
