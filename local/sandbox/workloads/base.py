"""What a simulated pod receives and answers: plain data, so the mesh can dispatch without sockets.

A real pod listens on a port; here the mesh picks a pod object and calls the workload that pod's
image selects (``workload_for``). That keeps thousands of pods at the cost of a few dicts, and the
workload still decides its answer from nothing but its pod spec, as a real container would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class WorkloadRequest:
    """One HTTP request as the pod sees it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    host: str
    port: int | None = None
    """The container port it reached (podinfo serves its metrics port apart from its API)."""


@dataclass
class WorkloadResponse:
    """The pod's answer; ``headers`` are added to the mesh's own."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Workload = Callable[[Obj, Obj, WorkloadRequest], Awaitable[WorkloadResponse]]
"""``(pod, container, request) -> response``: a pod's behaviour."""


def container_env(container: Obj) -> dict[str, str]:
    """A container's literal environment (``value`` entries; ``valueFrom`` is not resolved)."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if isinstance(item, dict) and "value" in item:
            env[str(item.get("name"))] = str(item["value"])
    return env


def image_tag(image: str) -> str:
    """``quay.io/stefanprodan/podinfo:1.4.1`` → ``1.4.1`` (``latest`` when untagged)."""
    last = image.rsplit("/", 1)[-1].split("@", 1)[0]
    return last.split(":", 1)[1] if ":" in last else "latest"


def serving_container(pod: Obj, port: int | None) -> Obj:
    """The container that owns ``port`` (the first container when none declares it)."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    if port is not None:
        for container in containers:
            for cport in container.get("ports") or []:
                if cport.get("containerPort") == port:
                    return dict(container)
    return dict(containers[0])


def workload_of(pod: Obj) -> str:
    """The Deployment that owns a pod, as Istio names ``*_workload``.

    That is the ReplicaSet's name without its pod-template-hash; a bare pod is its own workload.
    """
    md = pod.get("metadata") or {}
    refs = md.get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return str(md.get("name", "unknown"))
    name = str(ref.get("name", ""))
    pod_hash = (md.get("labels") or {}).get("pod-template-hash")
    if ref.get("kind") == "ReplicaSet" and pod_hash and name.endswith(f"-{pod_hash}"):
        return name[: -len(pod_hash) - 1]
    return name
