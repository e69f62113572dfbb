"""Kubernetes Events for what the simulated controllers do, so ``kubectl describe`` tells the story.

Events are real ``core/v1`` Event objects in the store, shaped as the kubelet and the controller
manager write them (involvedObject, reason, message, type, count, first/last timestamp,
source.component). Repeats of the same event on the same object are folded into one Event with a
growing ``count``, like the apiserver's event correlator, which keeps a flapping pod from filling
the store.
"""

from __future__ import annotations

import time
from typing import Any

from sandbox.controllers._meta import Obj, meta, now_iso, parse_iso
from sandbox.errors import ApiError

API_VERSIONS = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}


class EventRecorder:
    """Writes (or bumps) Events through the store."""

    def __init__(self, store: Any, *, host: str) -> None:
        self._store = store
        self._host = host
        # (object uid, reason, message) → event name, for folding repeats into a count.
        self._seen: dict[tuple[str, str, str], tuple[str, str]] = {}

    def record(
        self,
        obj: Obj,
        *,
        kind: str,
        reason: str,
        message: str,
        component: str,
        warning: bool = False,
    ) -> None:
        """Record one event about ``obj`` (a Deployment, ReplicaSet, Pod or HPA dict)."""
        md = meta(obj)
        namespace = md.get("namespace") or "default"
        key = (str(md.get("uid", "")), reason, message)
        stamp = now_iso()
        if key in self._seen and self._bump(namespace, self._seen[key][0], stamp):
            return
        name = f"{md.get('name')}.{time.time_ns():x}"
        source: Obj = {"component": component}
        if component == "kubelet":
            source["host"] = self._host
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSIONS.get(kind, "v1"),
                "kind": kind,
                "name": md.get("name"),
                "namespace": namespace,
                "uid": md.get("uid"),
                "resourceVersion": md.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {
                "component": component,
                "host": self._host if component == "kubelet" else None,
            },
            "reportingComponent": component,
            "reportingInstance": self._host,
        }
        try:
            self._store.create("", "events", event)
        except ApiError:
            return  # an event is best effort, never a reason to fail a reconcile
        self._seen[key] = (name, namespace)

    def _bump(self, namespace: str, name: str, stamp: str) -> bool:
        try:
            event = self._store.get("", "events", namespace, name)
            if event is None:
                return False
            event["count"] = int(event.get("count") or 1) + 1
            event["lastTimestamp"] = stamp
            self._store.update("", "events", event)
        except ApiError:
            return False
        return True

    def prune(self, ttl: float) -> int:
        """Delete Events not seen for ``ttl`` seconds (the event TTL); returns how many."""
        cutoff = time.time() - ttl
        doomed = [
            e
            for e in self._store.scan("", "events")
            if (parse_iso(e.get("lastTimestamp")) or cutoff) < cutoff
        ]
        for event in doomed:
            md = event["metadata"]
            self._store.delete("", "events", md.get("namespace"), md["name"])
        return len(doomed)

    def forget(self, uid: str) -> None:
        """Drop the folding memory for a deleted object (keeps memory flat under churn)."""
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]
