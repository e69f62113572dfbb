"""DaemonSet targets, by Flagger's rules (``pkg/canary/daemonset_controller.go``).

A DaemonSet runs one pod per matching node, so it has no replicas to scale:

- the primary ``<target>-primary`` DaemonSet is built as the primary Deployment is (selector label
  suffixed ``-primary``, configs copied, revision annotated) with the DaemonSet's rollout settings
  (``minReadySeconds``, ``revisionHistoryLimit``, ``updateStrategy``); it has no autoscaler;
- "scaled to zero" is a node selector no node matches: the target's pod template gets
  ``flagger.app/scale-to-zero: "true"`` (Flagger's key, so a DaemonSet Flagger idled is idle
  here too) and the DaemonSet controller removes its pods; "scaled up" removes that key;
- that key is never part of the revision and never reaches the primary, so idling the target
  is not a new release;
- a DaemonSet is ready when the controller has seen its spec and every scheduled pod is updated
  and enough (``readyThreshold`` percent) are available (Flagger's ``isDaemonSetReady``); an
  idled one schedules none and is ready at once;
- only the RollingUpdate strategy is accepted (OnDelete would never roll the primary).
"""

from __future__ import annotations

import json
from typing import Any

from activities.errors import InvalidSpec
from activities.kubernetes import objects
from activities.kubernetes.readiness import Readiness
from activities.kubernetes.resources import (
    DAEMON_SET,
    DEPLOYMENT,
    FINGERPRINT_ANNOTATION,
    Kind,
    Obj,
)
from activities.kubernetes.revision import SCALE_TO_ZERO, ConfigRefs, without_idle_selector
from workflows.spec import Canary

KIND = DAEMON_SET.name
_COPIED_SPEC = ("minReadySeconds", "revisionHistoryLimit", "updateStrategy")


def is_daemonset(canary: Canary) -> bool:
    return canary.spec.target_ref.kind == KIND


def target_kind(canary: Canary) -> Kind:
    """The kind of the Canary's target: its DaemonSet or its Deployment."""
    return DAEMON_SET if is_daemonset(canary) else DEPLOYMENT


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def idle_patch(daemonset: Obj, *, idle: bool) -> Obj | None:
    """The merge patch that idles (or un-idles) the DaemonSet; None when it already is so."""
    template_spec = ((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}
    selector = template_spec.get("nodeSelector") or {}
    is_idle = all(selector.get(k) == v for k, v in SCALE_TO_ZERO.items())
    if is_idle == idle:
        return None
    wanted: dict[str, Any] = {k: (v if idle else None) for k, v in SCALE_TO_ZERO.items()}
    return {"spec": {"template": {"spec": {"nodeSelector": wanted}}}}


def check_strategy(target: Obj) -> None:
    strategy = ((target.get("spec") or {}).get("updateStrategy") or {}).get("type")
    if strategy not in (None, "", "RollingUpdate"):
        meta = target.get("metadata") or {}
        raise InvalidSpec(
            f"daemonset {meta.get('name')}.{meta.get('namespace')} must have the RollingUpdate "
            f"strategy but has {strategy}: set spec.updateStrategy.type to RollingUpdate"
        )


def _template(target: Obj, copied: ConfigRefs, revision: str) -> Obj:
    label, value = objects.selector_label(target)
    return without_idle_selector(objects.primary_template(target, copied, label, value, revision))


def primary_daemonset(
    canary: Canary,
    target: Obj,
    copied: ConfigRefs,
    revision: str,
    include_label_prefixes: tuple[str, ...] = (),
) -> Obj:
    """The ``-primary`` DaemonSet first created from the target (createPrimaryDaemonSet)."""
    check_strategy(target)
    # The Deployment builder names, labels, annotates and owns the primary as Flagger does; the
    # DaemonSet keeps its spec's own rollout fields instead of replicas and strategy.
    built = objects.primary_deployment(canary, target, copied, revision, include_label_prefixes)
    spec = target.get("spec") or {}
    primary_spec: Obj = {k: _copy(spec[k]) for k in _COPIED_SPEC if k in spec}
    primary_spec["selector"] = built["spec"]["selector"]
    primary_spec["template"] = _template(target, copied, revision)
    return {**built, "kind": KIND, "spec": primary_spec}


def promoted_primary_daemonset(primary: Obj, target: Obj, copied: ConfigRefs, revision: str) -> Obj:
    """The live primary DaemonSet with the target's template and rollout settings (Promote)."""
    check_strategy(target)
    spec = target.get("spec") or {}
    body: Obj = _copy(primary)
    body.pop("status", None)
    body_spec = body.setdefault("spec", {})
    for key in _COPIED_SPEC:
        if key in spec:
            body_spec[key] = _copy(spec[key])
    body_spec["template"] = _template(target, copied, revision)
    meta = body.setdefault("metadata", {})
    annotations = {**(meta.get("annotations") or {}), objects.REVISION_ANNOTATION: revision}
    annotations.pop(FINGERPRINT_ANNOTATION, None)
    meta["annotations"] = annotations
    return body


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def readiness(daemonset: Obj, ready_threshold: int = 100) -> Readiness:
    """One read of a DaemonSet, judged as Flagger's ``isDaemonSetReady`` (never stuck: a
    DaemonSet has no progress deadline condition, so the deadline counts from the start of the
    wait, as Flagger counts it from the Canary's last transition)."""
    meta = daemonset.get("metadata") or {}
    status = daemonset.get("status") or {}
    display = f"{meta.get('name')}.{meta.get('namespace')}"
    waiting = f"Waiting for {display} rollout to finish: "
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        return Readiness(
            False,
            False,
            waiting + "observed daemonset generation less than desired generation",
            unobserved=True,
        )
    desired = _int(status.get("desiredNumberScheduled"))
    updated = _int(status.get("updatedNumberScheduled"))
    available = _int(status.get("numberAvailable"))
    if updated < desired:
        return Readiness(
            False, False, waiting + f"{updated} out of {desired} new pods have been updated"
        )
    needed = desired * ready_threshold // 100
    threshold = f" (readyThreshold {ready_threshold}%)" if ready_threshold < 100 else ""
    counts = f"{available} of {needed}{threshold} updated pods are available"
    if available < needed:
        return Readiness(False, False, waiting + counts)
    return Readiness(True, False, f"{display} rollout finished: {counts}")
