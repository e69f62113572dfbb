"""The Canary's status in Flagger's shape: fields, the Promoted condition, writes only on change."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.kubernetes.canary_status import (
    changed_fields,
    condition_patch,
    config_checksums,
    promoted_condition,
    promoted_condition_of,
    status_fields,
)
from workflows.activity_api import CanaryRef, CanaryStatusInput
from workflows.model import Phase

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 3, 9, 0, tzinfo=UTC)
REF = CanaryRef(namespace="test", name="podinfo", target="podinfo", service="podinfo")


def test_condition_follows_flaggers_make_status_conditions() -> None:
    assert promoted_condition_of(Phase.INITIALIZED) == (
        "True",
        "Deployment initialization completed.",
    )
    assert promoted_condition_of(Phase.PROGRESSING)[0] == "Unknown"
    assert promoted_condition_of(Phase.SUCCEEDED) == (
        "True",
        "Canary analysis completed successfully, promotion finished.",
    )
    assert promoted_condition_of(Phase.FAILED) == (
        "False",
        "Canary analysis failed, Deployment scaled to zero.",
    )


def test_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = promoted_condition({}, status="Unknown", reason="Progressing", message="m", now=T0)
    assert first["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    live = {"conditions": [first]}
    same = promoted_condition(live, status="Unknown", reason="Progressing", message="m", now=T1)
    assert same == first  # nothing changed: no write
    moved = promoted_condition(live, status="Unknown", reason="Promoting", message="n", now=T1)
    assert moved["lastTransitionTime"] == first["lastTransitionTime"]
    assert moved["lastUpdateTime"] == "2026-01-02T03:09:00Z"
    done = promoted_condition(live, status="True", reason="Succeeded", message="o", now=T1)
    assert done["lastTransitionTime"] == "2026-01-02T03:09:00Z"


def test_status_fields_are_flaggers_names() -> None:
    wanted = status_fields(
        CanaryStatusInput(
            ref=REF,
            phase=Phase.PROGRESSING,
            canary_weight=10,
            failed_checks=1,
            iterations=2,
            revision="abc",
            last_promoted_revision="old",
            last_transition_time=T0,
        ),
        {"configmap/podinfo-config": "123"},
    )
    assert wanted == {
        "phase": "Progressing",
        "canaryWeight": 10,
        "failedChecks": 1,
        "iterations": 2,
        "lastAppliedSpec": "abc",
        "lastPromotedSpec": "old",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "trackedConfigs": {"configmap/podinfo-config": "123"},
    }
    assert changed_fields(wanted, wanted) == {}
    assert changed_fields({**wanted, "canaryWeight": 5}, wanted) == {"canaryWeight": 10}


def test_config_checksums_change_with_the_data_only() -> None:
    one = config_checksums({"configmap/a": {"data": {"k": "1"}, "metadata": {"name": "a"}}})
    two = config_checksums({"configmap/a": {"data": {"k": "1"}, "metadata": {"uid": "x"}}})
    three = config_checksums({"configmap/a": {"data": {"k": "2"}}})
    assert one == two != three


def test_condition_patch_for_what_the_controller_reports() -> None:
    patch = condition_patch(
        {}, phase="Failed", reason="InvalidSpec", status="False", message="bad", now=T0
    )
    assert patch is not None
    status = patch["status"]
    assert status["phase"] == "Failed"
    assert status["conditions"][0]["message"] == "bad"
    again = condition_patch(
        {"status": status},
        phase="Failed",
        reason="InvalidSpec",
        status="False",
        message="bad",
        now=T1,
    )
    assert again is None
