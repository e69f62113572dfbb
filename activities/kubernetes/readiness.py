"""Whether a Deployment's rollout has finished: Flagger's ``isDeploymentReady`` as a pure function.

In order, as Flagger checks them (``pkg/canary/deployment_ready.go``):

1. the controller has not yet seen the latest spec (``observedGeneration < generation``);
2. the Deployment reports ``ProgressDeadlineExceeded`` — stuck: waiting longer will not help;
3. fewer updated replicas than wanted;
4. old replicas still terminating;
5. fewer available replicas than ``readyThreshold`` percent of the updated ones.

The messages read as Flagger's events do ("Waiting for podinfo.test rollout to finish: 0 of 1
updated replicas are available"), so users of Flagger recognise them.

The Canary's ``progressDeadlineSeconds`` counts as Flagger counts it: from the moment the
Deployment last went short of available pods (its ``Available`` condition turning False with
``MinimumReplicasUnavailable``), not from when anyone started waiting; a Deployment whose
controller has not yet seen its spec is waited for without a deadline (a busy
kube-controller-manager is no failed release).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    stuck: bool
    """The Deployment reports ProgressDeadlineExceeded: stop waiting."""
    message: str
    unobserved: bool = False
    """Its controller has not yet seen the latest spec: wait, whatever the deadline."""
    short_since: float | None = None
    """Since when (epoch seconds) a Deployment has had too few available pods, as its
    ``Available`` condition says; the progress deadline counts from here. None: not known (a
    DaemonSet has no such condition: the deadline counts from the start of the wait)."""

    def overdue(self, deadline_seconds: float, *, waiting_since: float, now: float) -> bool:
        """Past the progress deadline, by Flagger's rules (never while unobserved)."""
        if self.ready or self.unobserved:
            return False
        since = self.short_since if self.short_since is not None else waiting_since
        return now > since + deadline_seconds


def _condition(status: Obj, kind: str) -> Obj | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            result: Obj = condition
            return result
    return None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) else 0


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _short_since(status: Obj) -> float | None:
    available = _condition(status, "Available")
    if (
        available is not None
        and available.get("status") == "False"
        and available.get("reason") == "MinimumReplicasUnavailable"
    ):
        return _time(available.get("lastUpdateTime") or available.get("lastTransitionTime"))
    return None


def readiness(deployment: Obj, ready_threshold: int = 100) -> Readiness:
    """Evaluate one read of a Deployment; ``ready_threshold``: percent of pods to be ready."""
    meta = deployment.get("metadata") or {}
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    display = f"{meta.get('name')}.{meta.get('namespace')}"
    waiting = f"Waiting for {display} rollout to finish: "
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        return Readiness(
            False,
            False,
            waiting + "observed deployment generation less than desired generation",
            unobserved=True,
        )
    progressing = _condition(status, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(False, True, f"Deployment {display} exceeded its progress deadline")
    since = _short_since(status)
    wanted = _int(spec.get("replicas", 1))
    updated, total = _int(status.get("updatedReplicas")), _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    if updated < wanted:
        return Readiness(
            False,
            False,
            waiting + f"{updated} out of {wanted} new replicas have been updated",
            short_since=since,
        )
    if total > updated:
        return Readiness(
            False,
            False,
            waiting + f"{total - updated} old replicas are pending termination",
            short_since=since,
        )
    needed = updated * ready_threshold // 100
    threshold = f" (readyThreshold {ready_threshold}%)" if ready_threshold < 100 else ""
    counts = f"{available} of {needed}{threshold} updated replicas are available"
    if available < needed:
        return Readiness(False, False, waiting + counts, short_since=since)
    return Readiness(True, False, f"{display} rollout finished: {counts}")
