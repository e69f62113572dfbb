"""Cluster DNS for the mesh: which Service a host name means.

A request's host is one of ``<svc>``, ``<svc>.<ns>``, ``<svc>.<ns>.svc``,
``<svc>.<ns>.svc.cluster.local`` (each with or without a port), or an outside name that only a
VirtualService knows (a Gateway host such as ``app.example.com``). Service-like names become the
FQDN ``<svc>.<ns>.svc.cluster.local``; a bare ``<svc>`` is looked up in the caller's namespace (from
the proxy identity, else ``default``) and, failing that, in the one namespace that has such a
Service. Names in VirtualServices and DestinationRules are read relative to their own namespace, as
Istio reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

SUFFIX = ".svc.cluster.local"


class ServiceRef(NamedTuple):
    namespace: str
    name: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}{SUFFIX}"


def split_host_port(authority: str) -> tuple[str, int | None]:
    """``podinfo.test:9898`` → (``podinfo.test``, 9898); the port is ``None`` when absent."""
    host, sep, port = authority.strip().lower().rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host, int(port)
    return authority.strip().lower(), None


def service_of_fqdn(host: str) -> ServiceRef | None:
    if host.endswith(SUFFIX):
        parts = host[: -len(SUFFIX)].split(".")
        if len(parts) == 2 and all(parts):
            return ServiceRef(parts[1], parts[0])
    return None


def qualify(
    host: str,
    *,
    namespace: str,
    namespace_exists: Callable[[str], bool],
) -> str:
    """A host as written in a route or request, made canonical: a service FQDN or itself."""
    host = host.lower().rstrip(".")
    if host.endswith(SUFFIX) or "*" in host:
        return host
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}{SUFFIX}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{parts[0]}.{parts[1]}{SUFFIX}"
    if len(parts) == 2 and namespace_exists(parts[1]):
        return f"{parts[0]}.{parts[1]}{SUFFIX}"
    return host


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: exact, or a ``*.example.com`` / ``*`` wildcard."""
    if pattern in ("*", host):
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:])
