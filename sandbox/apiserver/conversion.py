"""Version conversion for the one built-in kind whose versions differ in shape: autoscaling HPAs.

Storage is version-independent: most kinds look the same in every version they are served in
(Istio's ``v1``/``v1beta1``/``v1alpha3``), so only ``apiVersion`` changes on the way out.
HorizontalPodAutoscaler is stored as ``autoscaling/v2`` and also served as ``autoscaling/v1``
(``kubectl autoscale`` posts v1), converted as kube-apiserver converts it: v1's
``targetCPUUtilizationPercentage`` is v2's CPU ``Utilization`` resource metric, and what v1 cannot
express (other metrics, conditions, behavior) travels in the ``autoscaling.alpha.kubernetes.io/*``
annotations, so a round trip loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sandbox.store import clone

Obj = dict[str, Any]
Converter = Callable[[Obj], Obj]

_METRICS = "autoscaling.alpha.kubernetes.io/metrics"
_CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
_BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"
_CURRENT = "autoscaling.alpha.kubernetes.io/current-metrics"


def _is_cpu(metric: Obj, target: str) -> bool:
    resource = metric.get("resource") or {}
    return (
        metric.get("type") == "Resource"
        and resource.get("name") == "cpu"
        and "averageUtilization" in (resource.get(target) or {})
    )


def _annotate(meta: Obj, key: str, value: Any) -> None:
    if value:
        meta.setdefault("annotations", {})[key] = json.dumps(value, separators=(",", ":"))


def hpa_v2_to_v1(obj: Obj) -> Obj:
    out: Obj = clone(obj)
    meta = out.setdefault("metadata", {})
    spec, status = out.get("spec") or {}, out.get("status") or {}
    metrics = spec.pop("metrics", None) or []
    cpu = [m for m in metrics if _is_cpu(m, "target")]
    if cpu:
        spec["targetCPUUtilizationPercentage"] = cpu[0]["resource"]["target"]["averageUtilization"]
    _annotate(meta, _METRICS, [m for m in metrics if not _is_cpu(m, "target")])
    _annotate(meta, _BEHAVIOR, spec.pop("behavior", None))
    current = status.pop("currentMetrics", None) or []
    used = [m for m in current if _is_cpu(m, "current")]
    if used:
        status["currentCPUUtilizationPercentage"] = used[0]["resource"]["current"][
            "averageUtilization"
        ]
    _annotate(meta, _CURRENT, [m for m in current if not _is_cpu(m, "current")])
    _annotate(meta, _CONDITIONS, status.pop("conditions", None))
    if "status" in out:
        # Required (not omitempty) in v1, so v1 clients insist on them.
        out["status"] = {"currentReplicas": 0, "desiredReplicas": 0, **status}
    return out


def _take(meta: Obj, key: str) -> Any:
    annotations = meta.get("annotations") or {}
    raw = annotations.pop(key, None)
    if not annotations:
        meta.pop("annotations", None)
    return json.loads(raw) if raw else None


def hpa_v1_to_v2(obj: Obj) -> Obj:
    out: Obj = clone(obj)
    meta = out.setdefault("metadata", {})
    spec, status = out.setdefault("spec", {}), out.get("status")
    metrics = _take(meta, _METRICS) or []
    cpu = spec.pop("targetCPUUtilizationPercentage", None)
    if cpu is not None:
        target = {"type": "Utilization", "averageUtilization": cpu}
        metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}, *metrics]
    if metrics:
        spec["metrics"] = metrics
    behavior = _take(meta, _BEHAVIOR)
    if behavior:
        spec["behavior"] = behavior
    current = _take(meta, _CURRENT) or []
    conditions = _take(meta, _CONDITIONS)
    if isinstance(status, dict):
        used = status.pop("currentCPUUtilizationPercentage", None)
        if used is not None:
            usage = {"averageUtilization": used}
            current = [
                {"type": "Resource", "resource": {"name": "cpu", "current": usage}},
                *current,
            ]
        if current:
            status["currentMetrics"] = current
        if conditions:
            status["conditions"] = conditions
    return out


# (group, plural, version) -> (from storage to the version, from the version to storage)
CONVERSIONS: dict[tuple[str, str, str], tuple[Converter, Converter]] = {
    ("autoscaling", "horizontalpodautoscalers", "v1"): (hpa_v2_to_v1, hpa_v1_to_v2),
}


def from_storage(group: str, plural: str, version: str, obj: Obj) -> Obj:
    pair = CONVERSIONS.get((group, plural, version))
    return pair[0](obj) if pair else obj


def to_storage(group: str, plural: str, version: str, obj: Obj) -> Obj:
    pair = CONVERSIONS.get((group, plural, version))
    return pair[1](obj) if pair else obj
