"""The Deployment controller: one ReplicaSet per pod template, rolled by the Deployment's strategy.

Each reconcile converges one step, like ``rolloutRolling`` in Kubernetes, and is re-triggered by the
ReplicaSets' and pods' events until the rollout completes:

1. find the new ReplicaSet (``<deployment>-<pod-template-hash>``), creating it when the template
   changed;
2. scale it up within ``replicas + maxSurge`` pods in total;
3. scale old ReplicaSets down while at least ``replicas - maxUnavailable`` pods stay available
   (unavailable old pods go first);
4. write the status (deployment_status.py) and prune ReplicaSets beyond ``revisionHistoryLimit``.

``Recreate`` scales every old ReplicaSet to zero first and the new one up once their pods are gone.
A paused Deployment only gets its status refreshed.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.controllers import deployment_status as ds
from sandbox.controllers._index import OwnerIndex
from sandbox.controllers._meta import (
    Obj,
    controller_of,
    meta,
    owner_ref,
    template_hash,
    uid_of,
)
from sandbox.controllers._queue import Key, WorkQueue
from sandbox.controllers.events import EventRecorder
from sandbox.errors import AlreadyExists

COMPONENT = "deployment-controller"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"


def _replicas(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("replicas") or 0)


def _available(obj: Obj) -> int:
    return int((obj.get("status") or {}).get("availableReplicas") or 0)


def _revision(obj: Obj) -> int:
    try:
        return int((meta(obj).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


class DeploymentController:
    """Reconciles Deployments into ReplicaSets."""

    kind = "deployments"

    def __init__(
        self, store: Any, queue: WorkQueue, events: EventRecorder, replicasets: OwnerIndex
    ) -> None:
        self._store = store
        self._queue = queue
        self._events = events
        self._rs_index = replicasets
        self.active: set[tuple[str, str]] = set()

    def on_event(self, event_type: str, deployment: Obj) -> None:
        md = meta(deployment)
        key = (md.get("namespace") or "default", str(md["name"]))
        if event_type == "DELETED":
            self.active.discard(key)
            return
        self._queue.add(Key(self.kind, *key))

    def on_rs_event(self, rs: Obj) -> None:
        for ref in meta(rs).get("ownerReferences") or []:
            if ref.get("kind") == "Deployment":
                self._queue.add(Key(self.kind, meta(rs).get("namespace") or "default", ref["name"]))

    def tick(self) -> None:
        """Re-check rollouts in progress, whose deadline passes without any event."""
        for key in list(self.active):
            self._queue.add(Key(self.kind, *key))

    def reconcile(self, namespace: str, name: str) -> None:
        deployment = self._store.get("apps", "deployments", namespace, name)
        if deployment is None:
            return
        all_rs = self._replicasets(deployment)
        new_rs = self._new_replicaset(deployment, all_rs)
        if not (deployment.get("spec") or {}).get("paused"):
            if new_rs is None:
                new_rs = self._create_replicaset(deployment, all_rs)
                all_rs = [*all_rs, new_rs]
            else:
                self._adopt_as_newest(deployment, new_rs, all_rs)
            self._rollout(deployment, new_rs, all_rs)
            all_rs = self._replicasets(deployment)
            new_rs = next((rs for rs in all_rs if uid_of(rs) == uid_of(new_rs)), new_rs)
        self._write_status(deployment, new_rs, all_rs)
        self._prune_history(deployment, new_rs, all_rs)

    def _replicasets(self, deployment: Obj) -> list[Obj]:
        found = []
        for ns, name in self._rs_index.dependents(uid_of(deployment)):
            rs = self._store.peek("apps", "replicasets", ns, name)
            if rs is not None:
                found.append(rs)
        return sorted(
            found, key=lambda rs: (str(meta(rs).get("creationTimestamp")), meta(rs)["name"])
        )

    def _new_replicaset(self, deployment: Obj, all_rs: list[Obj]) -> Obj | None:
        name = f"{meta(deployment)['name']}-{template_hash(self._template(deployment))}"
        return next((rs for rs in all_rs if meta(rs)["name"] == name), None)

    @staticmethod
    def _template(deployment: Obj) -> Obj:
        template: Obj = copy.deepcopy((deployment.get("spec") or {}).get("template") or {})
        (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
        return template

    def _create_replicaset(self, deployment: Obj, all_rs: list[Obj]) -> Obj:
        md = meta(deployment)
        spec = deployment.get("spec") or {}
        template = self._template(deployment)
        pod_hash = template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        revision = max((_revision(rs) for rs in all_rs), default=0) + 1
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{md['name']}-{pod_hash}",
                "namespace": md.get("namespace"),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(_replicas(deployment)),
                },
                "ownerReferences": [
                    owner_ref(deployment, kind="Deployment", api_version="apps/v1")
                ],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        try:
            created: Obj = self._store.create("apps", "replicasets", rs)
        except AlreadyExists:
            created = self._adopt_orphan(rs)
        self._set_revision(deployment, revision)
        status = deployment.setdefault("status", {})
        conditions = status.setdefault("conditions", [])
        msg = f'Created new replica set "{meta(created)["name"]}"'
        ds._set_condition(conditions, ds.condition(ds.PROGRESSING, True, ds.CREATED, msg))
        return created

    def _adopt_orphan(self, wanted: Obj) -> Obj:
        """A ReplicaSet of this template left by a Deployment deleted with ``--cascade=orphan``:
        adopt it, as the deployment controller does, instead of failing on its name."""
        md = meta(wanted)
        existing = self._store.get("apps", "replicasets", md["namespace"], md["name"])
        if existing is None:
            raise RuntimeError(f"replica set {md['name']} vanished while being created")
        ref = controller_of(existing) or {}
        # An owner reference to a Deployment that no longer exists is no owner.
        owner = self._store.peek("apps", "deployments", md["namespace"], ref.get("name", ""))
        if owner is not None and uid_of(owner) == ref.get("uid"):
            raise RuntimeError(f"replica set {md['name']} exists and belongs to another owner")
        meta(existing)["ownerReferences"] = md["ownerReferences"]
        adopted: Obj = self._store.update("apps", "replicasets", existing)
        return adopted

    def _adopt_as_newest(self, deployment: Obj, new_rs: Obj, all_rs: list[Obj]) -> None:
        """A template that returns to an older ReplicaSet (``rollout undo``) makes it the newest
        revision again, as Kubernetes does, so ``rollout history`` reads right."""
        newest = max((_revision(rs) for rs in all_rs), default=0)
        if _revision(new_rs) >= newest and _revision(deployment) == _revision(new_rs):
            return
        revision = newest + 1 if _revision(new_rs) < newest else _revision(new_rs)
        if _revision(new_rs) != revision:
            fresh = self._store.get(
                "apps", "replicasets", meta(new_rs).get("namespace"), meta(new_rs)["name"]
            )
            if fresh is not None:
                meta(fresh).setdefault("annotations", {})[REVISION] = str(revision)
                self._store.update("apps", "replicasets", fresh)
        self._set_revision(deployment, revision)

    def _set_revision(self, deployment: Obj, revision: int) -> None:
        fresh = self._store.get(
            "apps", "deployments", meta(deployment).get("namespace"), meta(deployment)["name"]
        )
        if fresh is None:
            return
        annotations = meta(fresh).setdefault("annotations", {})
        if annotations.get(REVISION) != str(revision):
            annotations[REVISION] = str(revision)
            self._store.update("apps", "deployments", fresh)

    def _rollout(self, deployment: Obj, new_rs: Obj, all_rs: list[Obj]) -> None:
        old = [rs for rs in all_rs if uid_of(rs) != uid_of(new_rs)]
        replicas = _replicas(deployment)
        if (deployment.get("spec") or {}).get("strategy", {}).get("type") == "Recreate":
            for rs in old:
                if _replicas(rs):
                    self._scale(deployment, rs, 0)
            if not any(int((rs.get("status") or {}).get("replicas") or 0) for rs in old):
                self._scale(deployment, new_rs, replicas)
            return
        surge, max_unavailable = ds.surge_and_unavailable(deployment)
        current = sum(_replicas(rs) for rs in all_rs)
        target = _replicas(new_rs)
        if target > replicas:
            target = replicas
        elif current < replicas + surge:
            target += min(replicas + surge - current, replicas - target)
        if target != _replicas(new_rs):
            new_rs = self._scale(deployment, new_rs, target)
        self._scale_down_old(deployment, new_rs, old, replicas - max_unavailable)

    def _scale_down_old(
        self, deployment: Obj, new_rs: Obj, old: list[Obj], min_available: int
    ) -> None:
        live = [rs for rs in old if _replicas(rs)]
        if not live:
            return
        all_pods = _replicas(new_rs) + sum(_replicas(rs) for rs in live)
        new_unavailable = max(_replicas(new_rs) - _available(new_rs), 0)
        budget = all_pods - min_available - new_unavailable
        if budget <= 0:
            return
        wanted = {uid_of(rs): _replicas(rs) for rs in live}
        # First the old pods that are not available anyway: removing them costs no availability.
        for rs in live:
            cut = min(budget, max(wanted[uid_of(rs)] - _available(rs), 0))
            wanted[uid_of(rs)] -= cut
            budget -= cut
        available = _available(new_rs) + sum(min(_available(rs), wanted[uid_of(rs)]) for rs in live)
        excess = available - min_available
        for rs in live:
            if excess <= 0:
                break
            cut = min(wanted[uid_of(rs)], excess)
            wanted[uid_of(rs)] -= cut
            excess -= cut
        for rs in live:
            if wanted[uid_of(rs)] != _replicas(rs):
                self._scale(deployment, rs, wanted[uid_of(rs)])

    def _scale(self, deployment: Obj, rs: Obj, replicas: int) -> Obj:
        fresh = self._store.get("apps", "replicasets", meta(rs).get("namespace"), meta(rs)["name"])
        if fresh is None:
            return rs
        before = _replicas(fresh)
        fresh["spec"]["replicas"] = replicas
        annotations = meta(fresh).setdefault("annotations", {})
        annotations["deployment.kubernetes.io/desired-replicas"] = str(_replicas(deployment))
        updated: Obj = self._store.update("apps", "replicasets", fresh)
        direction = "up" if replicas > before else "down"
        self._events.record(
            deployment,
            kind="Deployment",
            reason="ScalingReplicaSet",
            message=(
                f"Scaled {direction} replica set {meta(rs)['name']} from {before} to {replicas}"
            ),
            component=COMPONENT,
        )
        return updated

    def _write_status(self, deployment: Obj, new_rs: Obj | None, all_rs: list[Obj]) -> None:
        md = meta(deployment)
        key = (md.get("namespace") or "default", str(md["name"]))
        status = ds.compute_status(deployment, new_rs, all_rs)
        fresh = self._store.get("apps", "deployments", *key)
        if fresh is None:
            return
        if fresh.get("status") != status:
            fresh["status"] = status
            fresh = self._store.update_status("apps", "deployments", fresh)
        if ds.in_progress(fresh):
            self.active.add(key)
        else:
            self.active.discard(key)

    def _prune_history(self, deployment: Obj, new_rs: Obj | None, all_rs: list[Obj]) -> None:
        limit = int((deployment.get("spec") or {}).get("revisionHistoryLimit", 10))
        idle = [
            rs
            for rs in all_rs
            if (new_rs is None or uid_of(rs) != uid_of(new_rs))
            and not _replicas(rs)
            and not int((rs.get("status") or {}).get("replicas") or 0)
        ]
        for rs in sorted(idle, key=_revision)[: max(len(idle) - limit, 0)]:
            self._store.delete("apps", "replicasets", meta(rs).get("namespace"), meta(rs)["name"])
