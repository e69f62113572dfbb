"""The HorizontalPodAutoscaler controller, without metrics: it keeps the target within its bounds.

The sandbox has no CPU or custom metrics to scale on, so an HPA here only does what matters for
rollouts: it clamps the target Deployment's ``spec.replicas`` into ``[minReplicas, maxReplicas]``
(raising it on creation when below the minimum, as a real HPA does) and reports
``currentReplicas``/``desiredReplicas`` and its conditions, so tools that copy or read an HPA see
the usual shape. A target scaled to zero stays at zero: Kubernetes disables scaling then, which is
how a canary parked at zero between rollouts keeps its HPA.
"""

from __future__ import annotations

from typing import Any

from sandbox.controllers._meta import Obj, meta, now_iso
from sandbox.controllers._queue import Key, WorkQueue
from sandbox.controllers.events import EventRecorder

COMPONENT = "horizontal-pod-autoscaler"


def _condition(kind: str, status: bool, reason: str, message: str, stamp: str) -> Obj:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


class HpaController:
    """Reconciles HPAs against the Deployments they target."""

    kind = "horizontalpodautoscalers"

    def __init__(self, store: Any, queue: WorkQueue, events: EventRecorder) -> None:
        self._store = store
        self._queue = queue
        self._events = events
        self._by_target: dict[tuple[str, str], set[str]] = {}

    def on_event(self, event_type: str, hpa: Obj) -> None:
        md = meta(hpa)
        namespace, name = md.get("namespace") or "default", str(md["name"])
        for names in self._by_target.values():
            names.discard(name)
        target = ((hpa.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
        if event_type != "DELETED" and target:
            self._by_target.setdefault((namespace, str(target)), set()).add(name)
            self._queue.add(Key(self.kind, namespace, name))

    def on_deployment_event(self, deployment: Obj) -> None:
        md = meta(deployment)
        namespace = md.get("namespace") or "default"
        for name in self._by_target.get((namespace, str(md["name"])), ()):
            self._queue.add(Key(self.kind, namespace, name))

    def reconcile(self, namespace: str, name: str) -> None:
        hpa = self._store.get("autoscaling", "horizontalpodautoscalers", namespace, name)
        if hpa is None:
            return
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        stamp = now_iso()
        deployment = None
        if ref.get("kind", "Deployment") == "Deployment":
            deployment = self._store.get("apps", "deployments", namespace, ref.get("name", ""))
        if deployment is None:
            message = f'deployments.apps "{ref.get("name")}" not found'
            missing: Obj = {
                "currentReplicas": 0,
                "desiredReplicas": 0,
                "conditions": [_condition("AbleToScale", False, "FailedGetScale", message, stamp)],
            }
            self._write(hpa, missing)
            return
        low, high = int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 1)
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        # As Kubernetes: a target scaled to zero is left alone ("scaling is disabled"), which is how
        # a canary parked at zero between rollouts keeps its HPA without being woken by it.
        desired = 0 if current == 0 else min(max(current, low), high)
        old_status = hpa.get("status") or {}
        status: Obj = {
            "currentReplicas": int((deployment.get("status") or {}).get("replicas") or 0),
            "desiredReplicas": desired,
            "currentMetrics": [],
            "conditions": self._conditions(current, low, high, stamp),
        }
        if old_status.get("lastScaleTime"):
            status["lastScaleTime"] = old_status["lastScaleTime"]
        if desired != current:
            deployment["spec"]["replicas"] = desired
            self._store.update("apps", "deployments", deployment)
            status["lastScaleTime"] = stamp
            bound = "below Spec.MinReplicas" if desired > current else "above Spec.MaxReplicas"
            self._events.record(
                hpa,
                kind="HorizontalPodAutoscaler",
                reason="SuccessfulRescale",
                message=f"New size: {desired}; reason: Current number of replicas {bound}",
                component=COMPONENT,
            )
        self._write(hpa, status)

    @staticmethod
    def _conditions(current: int, low: int, high: int, stamp: str) -> list[Obj]:
        if current == 0:
            active = _condition(
                "ScalingActive",
                False,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                stamp,
            )
        else:
            active = _condition(
                "ScalingActive",
                True,
                "ValidMetricFound",
                "the sandbox has no resource metrics: replicas are kept and clamped to the bounds",
                stamp,
            )
        if current == 0:
            limited = _condition(
                "ScalingLimited", False, "DesiredWithinRange", "scaling is disabled", stamp
            )
        elif current < low:
            limited = _condition(
                "ScalingLimited",
                True,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
                stamp,
            )
        elif current > high:
            limited = _condition(
                "ScalingLimited",
                True,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
                stamp,
            )
        else:
            limited = _condition(
                "ScalingLimited",
                False,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
                stamp,
            )
        return [
            _condition(
                "AbleToScale",
                True,
                "ReadyForNewScale",
                "recommended size matches current size",
                stamp,
            ),
            active,
            limited,
        ]

    def _write(self, hpa: Obj, status: Obj) -> None:
        old = hpa.get("status") or {}
        # Compare without timestamps so an unchanged HPA is not rewritten on every pass.
        if _strip(old) != _strip(status):
            hpa["status"] = status
            self._store.update_status("autoscaling", "horizontalpodautoscalers", hpa)


def _strip(status: Obj) -> Obj:
    out = {k: v for k, v in status.items() if k != "conditions"}
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    return out
