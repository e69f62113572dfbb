"""The controller's decision for a Canary whose own spec changed (not its target): re-initialize
at rest, as Flagger's scheduler converges routes from the current spec; never while a rollout
runs or after a failure; record the hash where none is recorded yet."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from worker.controller import _decide as d

Obj = dict[str, Any]

TARGET: Obj = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "podinfo", "namespace": "test"},
    "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "podinfo:1"}]}}},
}


def lookup(plural: str, name: str) -> Obj | None:
    return TARGET if (plural, name) == ("deployments", "podinfo") else None


REVISION = d.target_revision(TARGET, lookup)


def canary(*, phase: str = "Succeeded", timeout: str | None = None, recorded: Any = "same") -> Obj:
    service: Obj = {"port": 9898} | ({"timeout": timeout} if timeout else {})
    obj: Obj = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": service,
            "analysis": {"interval": "10s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
        },
        "status": {"phase": phase, "lastAppliedSpec": REVISION},
    }
    if recorded == "same":
        recorded = d.spec_hash(obj)
    if recorded is not None:
        obj["metadata"]["annotations"] = {d.SPEC_ANNOTATION: recorded}
    return obj


def decide(obj: Obj) -> d.Action:
    return d.decide(obj, lookup, min_interval_seconds=10)


def changed(obj: Obj) -> Obj:
    new = copy.deepcopy(obj)
    new["spec"]["service"]["timeout"] = "7s"
    return new


def test_the_spec_hash_ignores_key_order_and_sees_values():
    a = canary()
    b = copy.deepcopy(a)
    b["spec"] = dict(reversed(list(a["spec"].items())))
    assert d.spec_hash(a) == d.spec_hash(b)
    assert d.spec_hash(changed(a)) != d.spec_hash(a)


@pytest.mark.parametrize(
    ("field", "value"),
    [("suspend", False), ("skipAnalysis", True), ("revertOnDeletion", True)],
)
def test_fields_that_build_nothing_need_no_reinitialization(field, value):
    obj = canary()
    obj["spec"][field] = value
    obj["spec"]["analysis"]["interval"] = "1m"
    action = decide(obj)
    assert isinstance(action, d.UpToDate), action


@pytest.mark.parametrize("phase", sorted(d.AT_REST))
def test_a_spec_change_at_rest_reinitializes_with_the_same_revision(phase):
    assert isinstance(decide(canary(phase=phase)), d.UpToDate)
    action = decide(changed(canary(phase=phase)))
    assert isinstance(action, d.Reinitialize)
    assert action.revision == REVISION


@pytest.mark.parametrize("phase", ["Progressing", "Waiting", "Promoting", "Finalising", "Failed"])
def test_no_reinitialization_while_a_rollout_runs_or_after_a_failure(phase):
    assert isinstance(decide(changed(canary(phase=phase))), d.UpToDate)


def test_a_new_revision_is_a_rollout_whatever_the_spec():
    obj = changed(canary())
    obj["status"]["lastAppliedSpec"] = "older"
    assert isinstance(decide(obj), d.Rollout)


def test_no_hash_recorded_yet_records_it_without_reinitializing():
    assert isinstance(decide(canary(recorded=None)), d.RecordSpec)


def test_coming_to_rest_with_a_spec_changed_during_the_rollout_is_noticed():
    running = changed(canary(phase="Progressing"))
    at_rest = changed(canary(phase="Succeeded"))
    running["metadata"]["annotations"] = {d.SPEC_ANNOTATION: d.spec_hash(canary())}
    at_rest["metadata"]["annotations"] = {d.SPEC_ANNOTATION: d.spec_hash(canary())}
    assert d.came_to_rest_with_new_spec(running, at_rest)
    assert not d.came_to_rest_with_new_spec(at_rest, at_rest)  # no phase change
    unchanged = canary(phase="Succeeded")
    assert not d.came_to_rest_with_new_spec(canary(phase="Progressing"), unchanged)


def _ab(obj: Obj, header: str) -> Obj:
    """The Canary as Flagger's A/B testing tutorial writes it: iterations and a header match."""
    new = copy.deepcopy(obj)
    analysis = new["spec"]["analysis"]
    del analysis["maxWeight"], analysis["stepWeight"]
    analysis["iterations"] = 10
    analysis["match"] = [{"headers": {"x-canary": {"exact": header}}}]
    return new


def test_a_match_change_at_rest_reinitializes_the_routes_carry_it():
    """The routes carry ``analysis.match`` at rest too (Flagger renders the matched route on
    every run), so changing who is matched converges the routes at once."""
    before = _ab(canary(), "insider")
    before["metadata"]["annotations"][d.SPEC_ANNOTATION] = d.spec_hash(before)
    assert isinstance(decide(before), d.UpToDate)
    after = copy.deepcopy(before)
    after["spec"]["analysis"]["match"] = [{"headers": {"x-canary": {"exact": "beta"}}}]
    action = decide(after)
    assert isinstance(action, d.Reinitialize), action
    assert action.revision == REVISION
    # Other analysis fields still steer only.
    steered = copy.deepcopy(before)
    steered["spec"]["analysis"]["iterations"] = 20
    assert isinstance(decide(steered), d.UpToDate)


def test_a_canary_without_a_match_hashes_as_before():
    """Recorded hashes of Canaries with no ``analysis.match`` stay valid across the upgrade."""
    obj = canary()
    spec = {k: v for k, v in obj["spec"].items() if k not in d.STEERING_FIELDS}
    text = d.json.dumps(spec, sort_keys=True, separators=(",", ":"))
    assert d.spec_hash(obj) == d.hashlib.sha256(text.encode()).hexdigest()[:16]
