"""The benchmarks' hands on the sandbox cluster: API calls that ride out a loaded API server, and
more of kwok's fake Nodes for runs of hundreds of canaries."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError


def retried(call: Any, *args: Any) -> Any:
    """A call to the API server, again after a dropped connection or a 5xx/429 (a loaded API
    server closes a kept-alive connection now and then); AlreadyExists counts as done."""
    for attempt in range(5):
        try:
            return call(*args)
        except ApiException as err:
            if err.status == 409:
                return None
            if err.status not in (429, 500, 502, 503, 504) or attempt == 4:
                raise
        except HTTPError:
            if attempt == 4:
                raise
        time.sleep(0.5 * (attempt + 1))
    return None


def add_nodes(api: Any, count: int, timeout: float = 60.0) -> list[str]:
    """More of kwok's fake Nodes, copied from the sandbox's own: its three hold 750 pods, and 500
    canaries need a primary and a canary pod each (plus the targets' pods until they are scaled
    down). Waits until kwok reports them Ready."""
    core = k8s.CoreV1Api(api)
    existing = api.sanitize_for_serialization(core.list_node(label_selector="type=kwok").items)
    if not existing:
        raise RuntimeError("the sandbox has no kwok Node to copy")
    names = []
    for i in range(count):
        model = existing[i % len(existing)]
        name = f"bench-node-{i}"
        labels = {**model["metadata"].get("labels", {}), "kubernetes.io/hostname": name}
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
            },
            "status": {
                "allocatable": model["status"]["allocatable"],
                "capacity": model["status"]["capacity"],
            },
        }
        retried(core.create_node, body)
        names.append(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = 0
        for name in names:
            conditions = core.read_node(name).status.conditions or []
            ready += any(c.type == "Ready" and c.status == "True" for c in conditions)
        if ready == len(names):
            return names
        time.sleep(0.5)
    raise TimeoutError(f"kwok did not make {names} Ready in {timeout:.0f} s")
