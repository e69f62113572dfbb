"""DaemonSet targets as pure functions: the primary built and promoted, idling by Flagger's node
selector, the revision blind to it, readiness as Flagger's isDaemonSetReady."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from activities.errors import InvalidSpec
from activities.kubernetes import daemonsets
from activities.kubernetes.objects import REVISION_ANNOTATION
from activities.kubernetes.revision import compute_revision
from tests.canaries import canary_doc
from workflows.spec import Canary, SpecError, parse_canary

IDLE_KEY = "flagger.app/scale-to-zero"


def target(**template_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "podinfo", "namespace": "test", "labels": {"app": "podinfo"}},
        "spec": {
            "selector": {"matchLabels": {"app": "podinfo"}},
            "minReadySeconds": 3,
            "revisionHistoryLimit": 4,
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}},
                "spec": {
                    "containers": [{"name": "podinfod", "image": "podinfo:1"}],
                    **template_spec,
                },
            },
        },
    }


def daemonset_canary() -> Canary:
    document = canary_doc()
    document["spec"]["targetRef"]["kind"] = "DaemonSet"
    return Canary.model_validate(document)


def test_the_spec_accepts_a_daemonset_without_an_autoscaler() -> None:
    assert daemonsets.is_daemonset(daemonset_canary())
    document = canary_doc(autoscaler="podinfo")
    document["spec"]["targetRef"]["kind"] = "DaemonSet"
    with pytest.raises(SpecError) as refused:
        parse_canary(document)
    assert refused.value.paths == ["spec.autoscalerRef"]
    document = canary_doc()
    document["spec"]["targetRef"]["kind"] = "StatefulSet"
    with pytest.raises(SpecError) as refused:
        parse_canary(document)
    assert "use Deployment or DaemonSet" in str(refused.value)


def test_primary_daemonset_has_the_rollout_settings_and_no_idling() -> None:
    live = target(nodeSelector={"type": "kwok", IDLE_KEY: "true"})
    primary = daemonsets.primary_daemonset(daemonset_canary(), live, {}, "abc")
    assert primary["kind"] == "DaemonSet"
    assert primary["metadata"]["name"] == "podinfo-primary"
    spec = primary["spec"]
    assert "replicas" not in spec
    assert "strategy" not in spec
    assert spec["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert spec["minReadySeconds"] == 3
    assert spec["revisionHistoryLimit"] == 4
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert spec["template"]["spec"]["nodeSelector"] == {"type": "kwok"}
    assert spec["template"]["metadata"]["labels"]["app"] == "podinfo-primary"
    assert spec["template"]["metadata"]["annotations"][REVISION_ANNOTATION] == "abc"


def test_on_delete_strategy_is_refused_naming_the_fix() -> None:
    live = target()
    live["spec"]["updateStrategy"] = {"type": "OnDelete"}
    with pytest.raises(InvalidSpec, match=r"set spec\.updateStrategy\.type to RollingUpdate"):
        daemonsets.primary_daemonset(daemonset_canary(), live, {}, "abc")


def test_promotion_copies_the_template_without_the_idling_selector() -> None:
    primary = daemonsets.primary_daemonset(daemonset_canary(), target(), {}, "one")
    primary["status"] = {"numberReady": 3}
    changed = target(nodeSelector={IDLE_KEY: "true"})
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "podinfo:2"
    changed["spec"]["minReadySeconds"] = 9
    promoted = daemonsets.promoted_primary_daemonset(primary, changed, {}, "two")
    assert "status" not in promoted
    assert promoted["spec"]["minReadySeconds"] == 9
    template = promoted["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "podinfo:2"
    assert "nodeSelector" not in template["spec"]
    assert promoted["metadata"]["annotations"][REVISION_ANNOTATION] == "two"
    assert promoted["spec"]["selector"] == primary["spec"]["selector"]


def test_idling_is_a_node_selector_patch_and_no_new_revision() -> None:
    awake = target(nodeSelector={"type": "kwok"})
    patch = daemonsets.idle_patch(awake, idle=True)
    assert patch == {"spec": {"template": {"spec": {"nodeSelector": {IDLE_KEY: "true"}}}}}
    idle = copy.deepcopy(awake)
    idle["spec"]["template"]["spec"]["nodeSelector"][IDLE_KEY] = "true"
    assert daemonsets.idle_patch(idle, idle=True) is None
    assert daemonsets.idle_patch(awake, idle=False) is None
    assert daemonsets.idle_patch(idle, idle=False) == {
        "spec": {"template": {"spec": {"nodeSelector": {IDLE_KEY: None}}}}
    }
    assert compute_revision(idle, {}) == compute_revision(awake, {})
    bare, bare_idle = target(), target(nodeSelector={IDLE_KEY: "true"})
    assert compute_revision(bare, {}) == compute_revision(bare_idle, {})
    # A Deployment's node selector is its own: only a DaemonSet's idling key is left out.
    deployment = {**bare_idle, "kind": "Deployment"}
    assert compute_revision(deployment, {}) != compute_revision({**bare, "kind": "Deployment"}, {})


def _daemonset(generation: int, **status: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "podinfo", "namespace": "test", "generation": generation},
        "status": status,
    }


def test_readiness_as_flaggers_is_daemonset_ready() -> None:
    stale = daemonsets.readiness(_daemonset(2, observedGeneration=1))
    assert not stale.ready
    assert "observed daemonset generation" in stale.message
    rolling = daemonsets.readiness(
        _daemonset(2, observedGeneration=2, desiredNumberScheduled=3, updatedNumberScheduled=1)
    )
    assert not rolling.ready
    assert "1 out of 3 new pods have been updated" in rolling.message
    status = {"observedGeneration": 2, "desiredNumberScheduled": 4, "updatedNumberScheduled": 4}
    assert not daemonsets.readiness(_daemonset(2, **status, numberAvailable=3)).ready
    assert daemonsets.readiness(_daemonset(2, **status, numberAvailable=3), 75).ready
    assert daemonsets.readiness(_daemonset(2, **status, numberAvailable=4)).ready
    # Idled: no node matches, nothing to wait for.
    idle = daemonsets.readiness(_daemonset(3, observedGeneration=3, desiredNumberScheduled=0))
    assert idle.ready
    assert not idle.stuck
