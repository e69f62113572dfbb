"""The ReplicaSet controller: keep ``spec.replicas`` pods alive, and report how many are ready.

Pods are created already bound to the sandbox node (the scheduler's part is only an Event, see
pods.py). On scale-down the pods least worth keeping go first, as in Kubernetes: not-ready before
ready, newest before oldest.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from sandbox.controllers._index import OwnerIndex
from sandbox.controllers._meta import (
    Obj,
    controller_of,
    meta,
    owner_ref,
    parse_iso,
    random_suffix,
    selector_matches,
    uid_of,
)
from sandbox.controllers._queue import Key, WorkQueue
from sandbox.controllers.events import EventRecorder
from sandbox.controllers.pods import is_pod_ready
from sandbox.errors import AlreadyExists
from sandbox.settings import WorldSettings

COMPONENT = "replicaset-controller"


def owned_pods(store: Any, pods: OwnerIndex, rs: Obj) -> list[Obj]:
    """The live pods this ReplicaSet controls (owned by its uid and still selected by it)."""
    selector = (rs.get("spec") or {}).get("selector") or {}
    found = []
    for namespace, name in pods.dependents(uid_of(rs)):
        pod = store.peek("", "pods", namespace, name)
        if (
            pod is not None
            and not meta(pod).get("deletionTimestamp")
            and selector_matches(selector, meta(pod).get("labels"))
        ):
            found.append(pod)
    return found


class ReplicaSetController:
    """Reconciles ReplicaSets against their pods."""

    kind = "replicasets"

    def __init__(
        self,
        store: Any,
        queue: WorkQueue,
        events: EventRecorder,
        settings: WorldSettings,
        pods: OwnerIndex,
    ) -> None:
        self._store = store
        self._pods = pods
        self._queue = queue
        self._events = events
        self._settings = settings

    def on_event(self, event_type: str, rs: Obj) -> None:
        del event_type
        md = meta(rs)
        self._queue.add(Key(self.kind, md.get("namespace") or "default", md["name"]))

    def on_pod_event(self, pod: Obj) -> None:
        ref = controller_of(pod)
        if ref and ref.get("kind") == "ReplicaSet":
            self._queue.add(Key(self.kind, meta(pod).get("namespace") or "default", ref["name"]))

    def reconcile(self, namespace: str, name: str) -> None:
        rs = self._store.get("apps", "replicasets", namespace, name)
        if rs is None:
            return
        pods = owned_pods(self._store, self._pods, rs)
        wanted = int((rs.get("spec") or {}).get("replicas", 1) or 0)
        if len(pods) < wanted:
            for _ in range(wanted - len(pods)):
                pods.append(self._create_pod(rs))
        elif len(pods) > wanted:
            doomed = sorted(pods, key=_deletion_rank)[: len(pods) - wanted]
            for pod in doomed:
                self._store.delete("", "pods", namespace, meta(pod)["name"])
                self._events.record(
                    rs,
                    kind="ReplicaSet",
                    reason="SuccessfulDelete",
                    message=f"Deleted pod: {meta(pod)['name']}",
                    component=COMPONENT,
                )
            pods = [p for p in pods if p not in doomed]
        self._write_status(rs, pods)

    def _create_pod(self, rs: Obj) -> Obj:
        md = meta(rs)
        template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
        pod_meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        spec.setdefault("nodeName", self._settings.node_name)
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        for _ in range(5):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{md['name']}-{random_suffix()}",
                    "namespace": md.get("namespace"),
                    "labels": dict(pod_meta.get("labels") or {}),
                    "annotations": dict(pod_meta.get("annotations") or {}),
                    "ownerReferences": [owner_ref(rs, kind="ReplicaSet", api_version="apps/v1")],
                },
                "spec": spec,
            }
            try:
                created: Obj = self._store.create("", "pods", pod)
            except AlreadyExists:
                continue  # a generated-name collision: draw another suffix
            self._events.record(
                rs,
                kind="ReplicaSet",
                reason="SuccessfulCreate",
                message=f"Created pod: {meta(created)['name']}",
                component=COMPONENT,
            )
            return created
        raise RuntimeError(f"could not name a new pod for {md['name']}")

    def _write_status(self, rs: Obj, pods: list[Obj]) -> None:
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        ready = [p for p in pods if is_pod_ready(p)]
        # Available = ready for at least minReadySeconds.
        available = ready if min_ready == 0 else [p for p in ready if _ready_for(p, min_ready)]
        if len(available) < len(ready):
            # Nothing else happens when that time passes: look again then.
            md = meta(rs)
            key = Key(self.kind, md.get("namespace") or "default", md["name"])
            self._queue.add_after(key, 1.0)
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": meta(rs).get("generation", 1),
        }
        old = rs.get("status") or {}
        if any(old.get(k, 0) != v for k, v in status.items()):
            rs["status"] = {k: v for k, v in status.items() if v or k in ("replicas",)}
            self._store.update_status("apps", "replicasets", rs)


def _deletion_rank(pod: Obj) -> tuple[int, str]:
    """Sort key: not-ready pods first, then the newest (largest creationTimestamp) first."""
    created = str(meta(pod).get("creationTimestamp") or "")
    inverted = "".join(chr(0x10FFFF - ord(c)) for c in created)
    return (1 if is_pod_ready(pod) else 0, inverted)


def _ready_for(pod: Obj, seconds: int) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            since = parse_iso(cond.get("lastTransitionTime"))
            return since is not None and time.time() - since >= seconds
    return False
