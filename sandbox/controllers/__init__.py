"""The simulated control plane: deployment, replicaset, endpoints and HPA controllers, scheduler and
kubelet.

``ControllerManager`` listens to the store's committed writes, routes each to the controllers that
care, and drains one shared de-duplicating work queue (``_queue.py``) in a task of the sandbox's
single event loop. A periodic tick re-checks what time alone changes (progress deadlines, HPA
bounds). Each controller reconciles one object at a time by reading the store and converging it, so
a missed or repeated event does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sandbox.controllers._index import OwnerIndex
from sandbox.controllers._meta import meta
from sandbox.controllers._queue import Key, WorkQueue
from sandbox.controllers.deployments import DeploymentController
from sandbox.controllers.endpoints import EndpointsController
from sandbox.controllers.events import EventRecorder
from sandbox.controllers.hpa import HpaController
from sandbox.controllers.pods import PodLifecycle
from sandbox.controllers.replicasets import ReplicaSetController
from sandbox.settings import WorldSettings
from sandbox.store import Event, Store

__all__ = ["ControllerManager", "Key", "WorldSettings"]

WATCHED = (
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("", "pods"),
    ("", "services"),
    ("autoscaling", "horizontalpodautoscalers"),
)


class ControllerManager:
    """Owns the controllers and their queue; ``run()`` until cancelled."""

    def __init__(self, store: Store, settings: WorldSettings | None = None) -> None:
        self.settings = settings or WorldSettings()
        self.store = store
        self.queue = WorkQueue()
        self.events = EventRecorder(store, host=self.settings.node_name)
        self.rs_index = OwnerIndex()
        self.pod_index = OwnerIndex()
        self.deployments = DeploymentController(store, self.queue, self.events, self.rs_index)
        self.replicasets = ReplicaSetController(
            store, self.queue, self.events, self.settings, self.pod_index
        )
        self.pods = PodLifecycle(store, self.queue, self.events, self.settings)
        self.endpoints = EndpointsController(store, self.queue)
        self.hpas = HpaController(store, self.queue, self.events)
        for controller in (
            self.deployments,
            self.replicasets,
            self.pods,
            self.endpoints,
            self.hpas,
        ):
            self.queue.register(controller.kind, controller.reconcile)
        # One listener per watched type: writes of other types (events, CRDs…) never reach us.
        self._unlisten = [store.listen(self._on_event, group=g, plural=p) for g, p in WATCHED]
        # Objects written before the manager started (none in practice) are picked up once.
        for group, plural in WATCHED:
            for obj in store.scan(group, plural):
                self._on_event(
                    Event(0, "ADDED", group, plural, obj["metadata"].get("namespace", ""), obj)
                )

    def _on_event(self, event: Event) -> None:
        kind, obj = (event.group, event.plural), event.obj
        if event.type == "DELETED":
            self.events.forget(str(meta(obj).get("uid")))
        if kind == ("apps", "deployments"):
            self.deployments.on_event(event.type, obj)
            self.hpas.on_deployment_event(obj)
        elif kind == ("apps", "replicasets"):
            self.rs_index.observe(event.type, event.namespace, obj)
            self.replicasets.on_event(event.type, obj)
            self.deployments.on_rs_event(obj)
        elif kind == ("", "pods"):
            self.pod_index.observe(event.type, event.namespace, obj)
            self.pods.on_event(event.type, obj)
            self.replicasets.on_pod_event(obj)
            self.endpoints.on_pod_event(event.type, obj)
        elif kind == ("", "services"):
            self.endpoints.on_service_event(event.type, obj)
        elif kind == ("autoscaling", "horizontalpodautoscalers"):
            self.hpas.on_event(event.type, obj)

    async def run(self) -> None:
        """Drain the queue and tick until cancelled."""
        worker = asyncio.create_task(self.queue.run(), name="controllers-queue")
        last_prune = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.settings.tick_interval)
                self.deployments.tick()
                if time.monotonic() - last_prune > 60:
                    last_prune = time.monotonic()
                    self.events.prune(self.settings.event_ttl)
                for hpa in self.store.scan("autoscaling", "horizontalpodautoscalers"):
                    md: Any = hpa["metadata"]
                    self.queue.add(Key(self.hpas.kind, md.get("namespace", ""), md["name"]))
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            for stop in self._unlisten:
                stop()
