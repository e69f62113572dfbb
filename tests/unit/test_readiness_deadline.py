"""The progress deadline by Flagger's rules (``isDeploymentReady``/``isDaemonSetReady``), as pure
functions of one read of the workload."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.kubernetes import daemonsets
from activities.kubernetes.readiness import readiness

SHORT_AT = datetime(2026, 12, 6, 9, 0, 0, tzinfo=UTC)
T0 = SHORT_AT.timestamp()


def _deployment(*, generation: int = 2, observed: int = 2, available: int = 0) -> dict:
    return {
        "metadata": {"name": "podinfo", "namespace": "test", "generation": generation},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": observed,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": available,
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "lastUpdateTime": SHORT_AT.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
        },
    }


def test_a_deployment_is_overdue_a_deadline_after_it_went_short_of_pods() -> None:
    state = readiness(_deployment())
    assert not state.ready
    assert state.short_since == T0
    # The wait began long after the pods went missing: the condition's time counts.
    assert not state.overdue(120, waiting_since=T0 + 500, now=T0 + 119)
    assert state.overdue(120, waiting_since=T0 + 500, now=T0 + 121)


def test_an_unobserved_spec_is_never_overdue() -> None:
    state = readiness(_deployment(generation=3, observed=2))
    assert state.unobserved
    assert not state.overdue(120, waiting_since=T0, now=T0 + 10_000)


def test_a_ready_deployment_is_never_overdue() -> None:
    state = readiness(_deployment(available=1))
    assert state.ready
    assert not state.overdue(1, waiting_since=T0, now=T0 + 10_000)


def test_a_daemonset_counts_from_the_start_of_the_wait() -> None:
    daemonset = {
        "metadata": {"name": "podinfo", "namespace": "test", "generation": 1},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": 2,
            "updatedNumberScheduled": 2,
            "numberAvailable": 1,
        },
    }
    state = daemonsets.readiness(daemonset)
    assert not state.ready
    assert state.short_since is None
    assert not state.overdue(60, waiting_since=T0, now=T0 + 59)
    assert state.overdue(60, waiting_since=T0, now=T0 + 61)
