"""Custom search attributes: the rollout list in the Web UI filtered by target, phase and weight.

A search attribute the server does not know makes every workflow task fail (the rollout sits in
Running), so a server must register ``SEARCH_ATTRIBUTES`` first (``coalmine temporal setup``, or
``start-dev --search-attribute``). Example query:
``CanaryNamespace = 'prod' AND CanaryPhase = 'Failed'``, or
``CanaryStrategy = 'blue-green'``.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

from workflows.model import RolloutStatus

CANARY_TARGET = SearchAttributeKey.for_keyword("CanaryTarget")
CANARY_NAMESPACE = SearchAttributeKey.for_keyword("CanaryNamespace")
CANARY_CLUSTER = SearchAttributeKey.for_keyword("CanaryCluster")
CANARY_PHASE = SearchAttributeKey.for_keyword("CanaryPhase")
CANARY_REVISION = SearchAttributeKey.for_keyword("CanaryRevision")
CANARY_WEIGHT = SearchAttributeKey.for_int("CanaryWeight")
CANARY_STRATEGY = SearchAttributeKey.for_keyword("CanaryStrategy")
"""Set when the rollout starts (a run's strategy never changes, and continue-as-new carries it):
the workflow never upserts it, so runs started before it existed replay unchanged."""

KEYWORD_ATTRIBUTES = (
    CANARY_TARGET,
    CANARY_NAMESPACE,
    CANARY_CLUSTER,
    CANARY_PHASE,
    CANARY_REVISION,
)
SEARCH_ATTRIBUTES = (*KEYWORD_ATTRIBUTES, CANARY_WEIGHT, CANARY_STRATEGY)
"""Every key a rollout carries: register all of them on a server before starting rollouts
(the worker does at start-up when it may)."""


def attribute_values(status: RolloutStatus, *, target: str) -> dict[str, str | int]:
    """The value of each attribute for a status (compared between upserts to skip no-op ones)."""
    return {
        CANARY_TARGET.name: target,
        CANARY_NAMESPACE.name: status.namespace,
        CANARY_CLUSTER.name: status.cluster,
        CANARY_PHASE.name: status.phase.value,
        CANARY_REVISION.name: status.revision or "",
        CANARY_WEIGHT.name: status.canary_weight,
    }


def attribute_updates(
    new: dict[str, str | int], old: dict[str, str | int]
) -> list[SearchAttributeUpdate[Any]]:
    """Updates for the attributes whose value changed (one upsert command per change only)."""
    updates: list[SearchAttributeUpdate[Any]] = []
    for key in KEYWORD_ATTRIBUTES:
        value = new[key.name]
        if value != old.get(key.name) and isinstance(value, str) and value:
            updates.append(key.value_set(value))
    weight = new[CANARY_WEIGHT.name]
    if weight != old.get(CANARY_WEIGHT.name) and isinstance(weight, int):
        updates.append(CANARY_WEIGHT.value_set(weight))
    return updates
