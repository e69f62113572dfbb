"""The scheduler and the kubelet in one: every pod is bound to the one node, started, and made
Ready.

Lifecycle of a pod (the knobs are documented in sandbox/README.md):

- on first sight it is "scheduled and started": phase Running, containers running but not ready, a
  pod IP; Events Scheduled, Pulling, Pulled, Created, Started;
- after the ready delay (``WorldSettings.pod_ready_delay`` or the pod's ``READY_DELAY_ANNOTATION``)
  its Ready and ContainersReady conditions turn True;
- a pod with an image that cannot be pulled (``UNPULLABLE_MARKERS``) stays Pending with its
  containers waiting in ``ErrImagePull``/``ImagePullBackOff`` and never becomes ready, like a typo'd
  tag on a real cluster.

Start times live in memory (monotonic clock) because status timestamps only have second precision.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from typing import Any

from sandbox.controllers._meta import Obj, meta, now_iso
from sandbox.controllers._queue import Key, WorkQueue
from sandbox.controllers.events import EventRecorder
from sandbox.settings import READY_DELAY_ANNOTATION, UNPULLABLE_MARKERS, WorldSettings


def is_unpullable(image: str) -> bool:
    return any(marker in image for marker in UNPULLABLE_MARKERS)


def is_pod_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def ready_delay(pod: Obj, default: float) -> float:
    raw = (meta(pod).get("annotations") or {}).get(READY_DELAY_ANNOTATION)
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        return default


def _condition(kind: str, status: bool, stamp: str) -> Obj:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": stamp,
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PodLifecycle:
    """Reconciles pods: bind, start, and flip to Ready after the delay."""

    kind = "pods"

    def __init__(
        self, store: Any, queue: WorkQueue, events: EventRecorder, settings: WorldSettings
    ) -> None:
        self._store = store
        self._queue = queue
        self._events = events
        self._settings = settings
        self._started: dict[str, float] = {}
        self._ips = itertools.count(2)

    def on_event(self, event_type: str, pod: Obj) -> None:
        md = meta(pod)
        if event_type == "DELETED":
            self._started.pop(str(md.get("uid")), None)
            return
        if not is_pod_ready(pod):
            self._queue.add(Key(self.kind, md.get("namespace") or "default", md["name"]))

    def reconcile(self, namespace: str, name: str) -> None:
        pod = self._store.get("", "pods", namespace, name)
        if pod is None or is_pod_ready(pod):
            return
        uid = str(meta(pod).get("uid"))
        status = pod.get("status") or {}
        if not status.get("conditions"):
            self._start(pod)
            return
        if status.get("phase") != "Running":
            return  # unpullable: stays Pending for good
        started = self._started.setdefault(uid, time.monotonic())
        remaining = started + ready_delay(pod, self._settings.pod_ready_delay) - time.monotonic()
        if remaining > 0:
            self._queue.add_after(Key(self.kind, namespace, name), remaining)
            return
        self._make_ready(pod)

    def _next_ip(self) -> str:
        n = next(self._ips)
        return f"10.244.{(n // 250) % 250}.{n % 250 + 1}"

    def _start(self, pod: Obj) -> None:
        stamp = now_iso()
        containers = (pod.get("spec") or {}).get("containers") or []
        broken = [c for c in containers if is_unpullable(str(c.get("image", "")))]
        self._kubelet_event(pod, "Scheduled", self._scheduled_message(pod), "default-scheduler")
        statuses = [self._container_status(c, broken=c in broken, stamp=stamp) for c in containers]
        pod["status"] = {
            "phase": "Pending" if broken else "Running",
            "conditions": [
                _condition("PodReadyToStartContainers", not broken, stamp),
                _condition("Initialized", True, stamp),
                _condition("Ready", False, stamp),
                _condition("ContainersReady", False, stamp),
                _condition("PodScheduled", True, stamp),
            ],
            "hostIP": "10.0.0.10",
            "hostIPs": [{"ip": "10.0.0.10"}],
            "podIP": self._next_ip(),
            "startTime": stamp,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }
        pod["status"]["podIPs"] = [{"ip": pod["status"]["podIP"]}]
        self._store.update_status("", "pods", pod)
        for container in containers:
            self._container_events(pod, container, broken=container in broken)
        if not broken:
            md = meta(pod)
            self._started[str(md.get("uid"))] = time.monotonic()
            delay = ready_delay(pod, self._settings.pod_ready_delay)
            self._queue.add_after(
                Key(self.kind, md.get("namespace") or "default", md["name"]), delay
            )

    def _scheduled_message(self, pod: Obj) -> str:
        md = meta(pod)
        node = self._settings.node_name
        return f"Successfully assigned {md.get('namespace')}/{md['name']} to {node}"

    def _container_status(self, container: Obj, *, broken: bool, stamp: str) -> Obj:
        image = str(container.get("image", ""))
        status: Obj = {
            "name": container.get("name"),
            "image": image,
            "imageID": ""
            if broken
            else f"{image.split(':', maxsplit=1)[0]}@sha256:{_digest(image)}",
            "ready": False,
            "started": not broken,
            "restartCount": 0,
        }
        if broken:
            status["state"] = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}"',
                }
            }
        else:
            status["containerID"] = f"containerd://{_digest(image + stamp + str(id(container)))}"
            status["state"] = {"running": {"startedAt": stamp}}
        return status

    def _container_events(self, pod: Obj, container: Obj, *, broken: bool) -> None:
        image, name = container.get("image"), container.get("name")
        self._kubelet_event(pod, "Pulling", f'Pulling image "{image}"', "kubelet")
        if broken:
            failed = f'Failed to pull image "{image}": rpc error: code = NotFound desc = not found'
            self._kubelet_event(pod, "Failed", failed, "kubelet", warning=True)
            self._kubelet_event(pod, "Failed", "Error: ErrImagePull", "kubelet", warning=True)
            backoff = f'Back-off pulling image "{image}"'
            self._kubelet_event(pod, "BackOff", backoff, "kubelet")
            return
        self._kubelet_event(pod, "Pulled", f'Successfully pulled image "{image}" in 0s', "kubelet")
        self._kubelet_event(pod, "Created", f"Created container {name}", "kubelet")
        self._kubelet_event(pod, "Started", f"Started container {name}", "kubelet")

    def _kubelet_event(
        self, pod: Obj, reason: str, message: str, component: str, *, warning: bool = False
    ) -> None:
        if self._settings.kubelet_events or warning:
            self._events.record(
                pod,
                kind="Pod",
                reason=reason,
                message=message,
                component=component,
                warning=warning,
            )

    def _make_ready(self, pod: Obj) -> None:
        stamp = now_iso()
        status = pod["status"]
        for cond in status.get("conditions") or []:
            if cond["type"] in ("Ready", "ContainersReady"):
                cond["status"] = "True"
                cond["lastTransitionTime"] = stamp
        for container in status.get("containerStatuses") or []:
            container["ready"] = True
        self._store.update_status("", "pods", pod)
