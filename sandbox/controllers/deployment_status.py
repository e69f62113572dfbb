"""Deployment status and conditions, computed the way the deployment controller does.

``kubectl rollout status`` and Flagger-style orchestrators read exactly these fields:
``observedGeneration``, ``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas``,
``unavailableReplicas`` and the ``Progressing`` / ``Available`` conditions. The Progressing rules
follow ``syncRolloutStatus``:

- complete (all replicas updated and available, no old ones) → True / ``NewReplicaSetAvailable``;
- any progress since the last status (more updated/ready/available, fewer old) → True /
  ``ReplicaSetUpdated``, which refreshes ``lastUpdateTime``;
- no progress for ``progressDeadlineSeconds`` since ``lastUpdateTime`` → False /
  ``ProgressDeadlineExceeded``.
"""

from __future__ import annotations

import time

from sandbox.controllers._meta import Obj, meta, now_iso, parse_iso

AVAILABLE = "Available"
PROGRESSING = "Progressing"
COMPLETE = "NewReplicaSetAvailable"
UPDATED = "ReplicaSetUpdated"
CREATED = "NewReplicaSetCreated"
TIMED_OUT = "ProgressDeadlineExceeded"


def resolve_percent(value: object, total: int, *, round_up: bool) -> int:
    """``maxSurge``/``maxUnavailable``: an int, or a percentage of ``total`` (surge rounds up)."""
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(str(value)) if value is not None else 0


def surge_and_unavailable(deployment: Obj) -> tuple[int, int]:
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, replicas
    rolling = strategy.get("rollingUpdate") or {}
    surge = resolve_percent(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = resolve_percent(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # as Kubernetes: a rollout must be able to make progress
    return surge, unavailable


def _set_condition(conditions: list[Obj], new: Obj, *, refresh: bool = False) -> None:
    """Replace the condition of the same type; keep lastTransitionTime while the status holds."""
    for i, cond in enumerate(conditions):
        if cond.get("type") != new["type"]:
            continue
        same = cond.get("status") == new["status"]
        if same and cond.get("reason") == new["reason"] and not refresh:
            return
        if same:
            new["lastTransitionTime"] = cond.get("lastTransitionTime", new["lastTransitionTime"])
        conditions[i] = new
        return
    conditions.append(new)


def condition(kind: str, status: bool, reason: str, message: str) -> Obj:
    stamp = now_iso()
    return {
        "type": kind,
        "status": "True" if status else "False",
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def get_condition(status: Obj, kind: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def compute_status(deployment: Obj, new_rs: Obj | None, all_rs: list[Obj]) -> Obj:
    """The Deployment's next status from its ReplicaSets (stored dicts, read only)."""
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    old_status = deployment.get("status") or {}

    def total(field: str) -> int:
        return sum(int((rs.get("status") or {}).get(field) or 0) for rs in all_rs)

    spec_total = sum(int((rs.get("spec") or {}).get("replicas") or 0) for rs in all_rs)
    status: Obj = {
        "observedGeneration": meta(deployment).get("generation", 1),
        "replicas": total("replicas"),
        "updatedReplicas": int(((new_rs or {}).get("status") or {}).get("replicas") or 0),
        "readyReplicas": total("readyReplicas"),
        "availableReplicas": total("availableReplicas"),
        "unavailableReplicas": max(spec_total - total("availableReplicas"), 0),
        "conditions": [dict(c) for c in old_status.get("conditions") or []],
    }
    if old_status.get("collisionCount") is not None:
        status["collisionCount"] = old_status["collisionCount"]
    _, max_unavailable = surge_and_unavailable(deployment)
    if status["availableReplicas"] >= replicas - max_unavailable:
        avail = condition(
            AVAILABLE, True, "MinimumReplicasAvailable", "Deployment has minimum availability."
        )
    else:
        avail = condition(
            AVAILABLE,
            False,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    _set_condition(status["conditions"], avail)
    _progress(deployment, status, old_status, new_rs)
    # Kubernetes omits zero counters; kubectl and the client treat a missing one as 0.
    for field in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas"):
        if not status[field]:
            del status[field]
    status["conditions"].sort(key=lambda c: 0 if c["type"] == AVAILABLE else 1)
    return status


def _progress(deployment: Obj, status: Obj, old: Obj, new_rs: Obj | None) -> None:
    spec = deployment.get("spec") or {}
    deadline = spec.get("progressDeadlineSeconds")
    current = get_condition(old, PROGRESSING)
    replicas = int(spec.get("replicas", 1))
    completed = current is not None and current.get("reason") == COMPLETE
    if deadline is None or (completed and status["replicas"] == status["updatedReplicas"]):
        return
    rs_name = meta(new_rs)["name"] if new_rs else meta(deployment)["name"]
    what = "ReplicaSet" if new_rs else "Deployment"
    if is_complete(status, replicas, deployment):
        cond = condition(
            PROGRESSING, True, COMPLETE, f'{what} "{rs_name}" has successfully progressed.'
        )
        _set_condition(status["conditions"], cond)
    elif _made_progress(status, old):
        cond = condition(PROGRESSING, True, UPDATED, f'{what} "{rs_name}" is progressing.')
        _set_condition(status["conditions"], cond, refresh=True)
    elif current is not None and _timed_out(current, int(deadline)):
        cond = condition(
            PROGRESSING, False, TIMED_OUT, f'{what} "{rs_name}" has timed out progressing.'
        )
        _set_condition(status["conditions"], cond)


def is_complete(status: Obj, replicas: int, deployment: Obj) -> bool:
    return bool(
        status.get("updatedReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
        and status.get("observedGeneration", 0) >= meta(deployment).get("generation", 1)
    )


def _made_progress(new: Obj, old: Obj) -> bool:
    def get(status: Obj, field: str) -> int:
        return int(status.get(field) or 0)

    old_olds = get(old, "replicas") - get(old, "updatedReplicas")
    new_olds = get(new, "replicas") - get(new, "updatedReplicas")
    return (
        get(new, "updatedReplicas") > get(old, "updatedReplicas")
        or new_olds < old_olds
        or get(new, "readyReplicas") > get(old, "readyReplicas")
        or get(new, "availableReplicas") > get(old, "availableReplicas")
    )


def _timed_out(current: Obj, deadline: int) -> bool:
    if current.get("reason") == TIMED_OUT:
        return True
    if current.get("reason") == COMPLETE:
        return False
    since = parse_iso(current.get("lastUpdateTime"))
    return bool(since is not None and since + deadline < time.time())


def in_progress(deployment: Obj) -> bool:
    """Whether the deployment's Progressing clock is running (the tick checks its deadline)."""
    current = get_condition(deployment.get("status") or {}, PROGRESSING)
    return current is None or current.get("reason") not in (COMPLETE, TIMED_OUT)
