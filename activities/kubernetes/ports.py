"""The ports of a Canary's Services: the main one, and those ``service.portDiscovery`` finds.

Flagger (``pkg/canary/util.go`` getPorts, ``pkg/router/kubernetes_default.go``) gives the apex,
``-primary`` and ``-canary`` Services the port ``service.port`` → ``targetPort`` named
``portName`` (with ``appProtocol`` when set), and with ``portDiscovery`` every other port the
target's containers declare, so a metrics or gRPC port reaches the primary's and the canary's
pods through their own Services too. Pure functions of the Canary and the target's dict.
"""

from __future__ import annotations

from typing import Any

from activities.errors import InvalidSpec
from workflows.spec import Canary

Obj = dict[str, Any]


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


SIDECARS = ("istio-proxy", "envoy")
"""Containers whose ports port discovery leaves out: the mesh's proxies (Flagger's list)."""


def main_port(canary: Canary) -> Obj:
    service = canary.spec.service
    port: Obj = {
        "name": service.port_name,
        "protocol": "TCP",
        "port": service.port,
        "targetPort": service.target_port if service.target_port is not None else service.port,
    }
    if service.app_protocol:
        port["appProtocol"] = service.app_protocol
    return port


def _is_main(canary: Canary, container_port: Obj) -> bool:
    """Whether a container port is the one ``service.port``/``targetPort`` already exposes."""
    target_port = canary.spec.service.target_port
    if target_port is None:
        return bool(container_port.get("containerPort") == canary.spec.service.port)
    if isinstance(target_port, int):
        return bool(container_port.get("containerPort") == target_port)
    return bool(container_port.get("name") == target_port)


def discovered_ports(canary: Canary, target: Obj) -> list[Obj]:
    """The Service ports ``service.portDiscovery`` adds, as Flagger's getPorts finds them.

    Every port of the pod template's containers (the mesh's proxies left out) but the main one,
    named as the container names it, else ``tcp-<container>-<index>``; port and target port
    are the container port, protocol TCP, no appProtocol. Two ports of one name: the later
    wins, as in Flagger's map. Ordered by port number (Flagger's map has no order; its diff
    sorts). Empty without ``portDiscovery``.
    """
    if not canary.spec.service.port_discovery:
        return []
    pod = ((target.get("spec") or {}).get("template") or {}).get("spec") or {}
    found: dict[str, int] = {}
    for container in pod.get("containers") or []:
        if container.get("name") in SIDECARS:
            continue
        for index, container_port in enumerate(container.get("ports") or []):
            if _is_main(canary, container_port):
                continue
            name = container_port.get("name") or f"tcp-{container.get('name')}-{index}"
            found[name] = int(container_port["containerPort"])
    ports = [
        {"name": name, "protocol": "TCP", "port": number, "targetPort": number}
        for name, number in sorted(found.items(), key=lambda item: (item[1], item[0]))
    ]
    _check_distinct(canary, target, ports)
    return ports


def _check_distinct(canary: Canary, target: Obj, discovered: list[Obj]) -> None:
    """Refuse what the API server would refuse later, with the fix: a discovered port that
    takes the main port's name or number (Flagger sends it and fails on every reconcile)."""
    main = main_port(canary)
    seen: dict[int, str] = {main["port"]: main["name"]}
    kind = str(target.get("kind") or "Deployment").lower()
    where = f"{kind} {_meta(target).get('name')}.{_meta(target).get('namespace')}"
    for port in discovered:
        if port["name"] == main["name"]:
            raise InvalidSpec(
                f"spec.service.portDiscovery: {where} has a container port named "
                f"{port['name']!r} ({port['port']}), the name of the service port "
                f"({main['port']}): set spec.service.targetPort to {port['name']!r} if it is "
                "the same port, or set spec.service.portName to another name"
            )
        if port["port"] in seen:
            raise InvalidSpec(
                f"spec.service.portDiscovery: {where} exposes port {port['port']} twice "
                f"({seen[port['port']]!r} and {port['name']!r}): remove one of the container "
                "ports, or turn portDiscovery off"
            )
        seen[port["port"]] = port["name"]
