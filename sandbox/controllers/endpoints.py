"""The Endpoints controller: a Service's selector, applied to pods, written as ``core/v1``
Endpoints.

Ready pods go to ``addresses`` and the others to ``notReadyAddresses``, each with a ``targetRef``
naming the pod, which is how the mesh finds the pod a request lands on. Named target ports are
resolved against the pods' container ports. Selector-less Services are left alone (their Endpoints
belong to the user).

Which Services does a pod event concern? An index from each (namespace, label, value) in a Service's
selector to the Services using it answers that without scanning every Service on every pod change.
"""

from __future__ import annotations

from typing import Any

from sandbox.controllers._meta import Obj, map_selector_matches, meta
from sandbox.controllers._queue import Key, WorkQueue
from sandbox.controllers.pods import is_pod_ready


def _target_port(port: Obj, pods: list[Obj]) -> int:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int) or str(target).isdigit():
        return int(str(target))
    for pod in pods:
        for container in (pod.get("spec") or {}).get("containers") or []:
            for cport in container.get("ports") or []:
                if cport.get("name") == target:
                    return int(cport.get("containerPort"))
    return int(port.get("port") or 0)


def _address(pod: Obj) -> Obj:
    md = meta(pod)
    return {
        "ip": (pod.get("status") or {}).get("podIP", ""),
        "nodeName": (pod.get("spec") or {}).get("nodeName"),
        "targetRef": {
            "kind": "Pod",
            "namespace": md.get("namespace"),
            "name": md.get("name"),
            "uid": md.get("uid"),
        },
    }


class EndpointsController:
    """Reconciles the Endpoints object of each Service."""

    kind = "endpoints"

    def __init__(self, store: Any, queue: WorkQueue) -> None:
        self._store = store
        self._queue = queue
        self._selectors: dict[tuple[str, str], dict[str, str]] = {}
        self._by_label: dict[tuple[str, str, str], set[str]] = {}
        # The same kind of index for pods, so a Service's pods are found without a namespace scan.
        self._pod_labels: dict[tuple[str, str], dict[str, str]] = {}
        self._pods_by_label: dict[tuple[str, str, str], set[str]] = {}

    def on_service_event(self, event_type: str, service: Obj) -> None:
        md = meta(service)
        namespace, name = md.get("namespace") or "default", str(md["name"])
        for label, value in self._selectors.pop((namespace, name), {}).items():
            self._by_label.get((namespace, label, value), set()).discard(name)
        selector = (service.get("spec") or {}).get("selector") or {}
        if event_type != "DELETED" and selector:
            self._selectors[(namespace, name)] = dict(selector)
            for label, value in selector.items():
                self._by_label.setdefault((namespace, label, str(value)), set()).add(name)
        self._queue.add(Key(self.kind, namespace, name))

    def on_pod_event(self, event_type: str, pod: Obj) -> None:
        md = meta(pod)
        namespace, pod_name = md.get("namespace") or "default", str(md["name"])
        labels = md.get("labels") or {}
        old_labels = self._pod_labels.pop((namespace, pod_name), {})
        for label, value in old_labels.items():
            self._pods_by_label.get((namespace, label, value), set()).discard(pod_name)
        if event_type != "DELETED":
            self._pod_labels[(namespace, pod_name)] = dict(labels)
            for label, value in labels.items():
                self._pods_by_label.setdefault((namespace, label, str(value)), set()).add(pod_name)
        candidates: set[str] = set()
        for label, value in {**old_labels, **labels}.items():
            candidates |= self._by_label.get((namespace, label, str(value)), set())
        for name in candidates:
            selector = self._selectors.get((namespace, name))
            if map_selector_matches(selector, labels) or map_selector_matches(selector, old_labels):
                self._queue.add(Key(self.kind, namespace, name))

    def _selected_pods(self, namespace: str, selector: dict[str, str]) -> list[Obj]:
        names: set[str] | None = None
        for label, value in selector.items():
            members = self._pods_by_label.get((namespace, label, str(value)), set())
            names = set(members) if names is None else names & members
        pods = [self._store.peek("", "pods", namespace, n) for n in sorted(names or ())]
        return [p for p in pods if p is not None]

    def reconcile(self, namespace: str, name: str) -> None:
        service = self._store.peek("", "services", namespace, name)
        current = self._store.get("", "endpoints", namespace, name)
        if service is None:
            if current is not None and (meta(current).get("labels") or {}).get(
                "endpoints.sandbox.coalmine.dev/managed"
            ):
                self._store.delete("", "endpoints", namespace, name)
            return
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            return
        pods = [
            p
            for p in self._selected_pods(namespace, selector)
            if map_selector_matches(selector, meta(p).get("labels"))
            and (p.get("status") or {}).get("podIP")
        ]
        subsets = self._subsets(service, pods)
        if current is None:
            self._store.create("", "endpoints", self._endpoints(service, subsets))
        elif current.get("subsets", []) != subsets:
            current["subsets"] = subsets
            self._store.update("", "endpoints", current)

    @staticmethod
    def _subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
        if not pods:
            return []
        ready = [_address(p) for p in pods if is_pod_ready(p)]
        not_ready = [_address(p) for p in pods if not is_pod_ready(p)]
        ports = [
            {
                "name": port.get("name"),
                "port": _target_port(port, pods),
                "protocol": port.get("protocol", "TCP"),
            }
            for port in (service.get("spec") or {}).get("ports") or []
        ]
        for port in ports:
            if port["name"] is None:
                del port["name"]
        subset: Obj = {"ports": ports}
        if ready:
            subset["addresses"] = sorted(ready, key=lambda a: a["targetRef"]["name"])
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: a["targetRef"]["name"])
        return [subset]

    @staticmethod
    def _endpoints(service: Obj, subsets: list[Obj]) -> Obj:
        md = meta(service)
        labels = dict(md.get("labels") or {})
        labels["endpoints.sandbox.coalmine.dev/managed"] = "true"
        return {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": md["name"], "namespace": md.get("namespace"), "labels": labels},
            "subsets": subsets,
        }
