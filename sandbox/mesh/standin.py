"""Transitional: the stand-in's in-process `Store` seen as the cluster view the mesh reads.

The mesh reads a `sandbox.kubecache.ClusterView` (a `KubeCache` on a real API server). Until the
runner moves to the real control plane it still hands the mesh the stand-in's `Store`, whose
controllers write core/v1 Endpoints and no EndpointSlices; `StoreView` presents each Endpoints
subset as the EndpointSlice the endpoint slice controller would write, so the mesh has one code
path. Delete this module, and its one use in ``proxy.py``, with the stand-in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sandbox.history import Event
from sandbox.kubecache import Change, ClusterView, IndexFunc, Listener
from sandbox.mesh import endpoints
from sandbox.store import Store

Obj = dict[str, Any]


def _slice(service_endpoints: Obj, index: int, subset: Obj) -> Obj:
    md = service_endpoints.get("metadata") or {}
    slice_endpoints = [
        {
            "addresses": [address.get("ip", "")],
            "conditions": {"ready": ready},
            "targetRef": address.get("targetRef"),
        }
        for ready, field in ((True, "addresses"), (False, "notReadyAddresses"))
        for address in subset.get(field) or []
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{md.get('name')}-{index}",
            "namespace": md.get("namespace"),
            "labels": {endpoints.SERVICE_LABEL: md.get("name")},
        },
        "addressType": "IPv4",
        "endpoints": slice_endpoints,
        "ports": [dict(port) for port in subset.get("ports") or []],
    }


class StoreView:
    """A `ClusterView` over the stand-in `Store` (EndpointSlices derived from Endpoints)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._slices: dict[tuple[str, str], tuple[object, list[Obj]]] = {}

    def peek(self, group: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        return self._store.peek(group, plural, namespace, name)

    def scan(self, group: str, plural: str, namespace: str | None = None) -> Iterable[Obj]:
        return self._store.scan(group, plural, namespace)

    def listen(self, callback: Listener, *, group: str, plural: str) -> Callable[[], None]:
        def relay(event: Event) -> None:
            callback(Change(event.type, group, plural, event.namespace, event.obj, event.previous))

        if (group, plural) == (endpoints.GROUP, endpoints.PLURAL):
            return self._store.listen(relay, group="", plural="endpoints")
        return self._store.listen(relay, group=group, plural=plural)

    def add_index(self, group: str, plural: str, name: str, fn: IndexFunc) -> None:
        del fn
        if (group, plural, name) != (endpoints.GROUP, endpoints.PLURAL, endpoints.BY_SERVICE):
            raise NotImplementedError(f"the stand-in view has no index {name} of {plural}")

    def by_index(self, group: str, plural: str, name: str, value: str) -> list[Obj]:
        self.add_index(group, plural, name, endpoints.slice_services)
        namespace, _, service = value.partition("/")
        found = self._store.peek("", "endpoints", namespace, service)
        if found is None:
            return []
        # Converted once per stored version: the Store replaces the dict on every write.
        version = (found.get("metadata") or {}).get("resourceVersion")
        cached = self._slices.get((namespace, service))
        if cached is None or cached[0] != version:
            slices = [_slice(found, i, s) for i, s in enumerate(found.get("subsets") or [])]
            cached = self._slices[(namespace, service)] = (version, slices)
        return cached[1]


def view_of(source: ClusterView | Store) -> ClusterView:
    """The view to read: a `Store` wrapped in `StoreView`, anything else as it is."""
    return StoreView(source) if isinstance(source, Store) else source
