"""The rollout report's timeline, read from recorded workflow histories (tests/replay/histories).

The recorded histories are real ones (the workflow on the time-skipping server, fake
activities); the ``analyse_step`` shape, which replaces one activity per check, is built here
event by event as the server records it, so both shapes are held to the same timeline.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory

from worker.report.build import merge_events
from worker.report.model import Action, CheckPoint, Event, Outcome, WebhookCall
from worker.report.timeline import event_kind, timeline_of
from worker.report.verdict import decisive_of

HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"
WID = "canary/default/test/podinfo"


def recorded(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(WID, (HISTORIES / f"{name}.json").read_text())


def test_a_rollback_shows_the_weights_the_breaches_and_the_decisive_check() -> None:
    t = timeline_of(recorded("rolled_back"))
    assert t.outcome == Outcome.ROLLED_BACK
    assert t.message == "Rolling back podinfo.test failed checks threshold reached 3"
    assert [w.canary for w in t.weights] == [10, 20, 30, 0]  # the last one is the rollback's
    assert (t.name, t.namespace, t.cluster, t.strategy) == ("podinfo", "test", "default", "canary")
    breaches = [c for c in t.checks if not c.passed]
    assert [(c.name, c.value, c.min, c.weight) for c in breaches] == [
        ("request-success-rate", 69.17, 99.0, 30)
    ] * 3
    # Two checks per step, steps numbered in order, each at the weight it was judged at.
    assert [c.step for c in t.checks] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [c.weight for c in t.checks if c.name == "request-duration"] == [10, 20, 30, 30, 30]
    duration = t.checks_of("request-duration")[0]
    assert (duration.min, duration.max) == (None, 500.0)  # the range comes from the spec
    decisive = t.decisive
    assert decisive is not None
    assert (decisive.kind, decisive.name, decisive.value, decisive.min, decisive.weight) == (
        "metric",
        "request-success-rate",
        69.17,
        99.0,
        30,
    )
    assert decisive.message == "success rate 69.17% < 99%"
    kinds = [(e.reason, e.type) for e in t.events[-2:]]
    assert kinds == [("Rollback", "Warning"), ("Failed", "Warning")]
    assert sum(1 for e in t.events if e.reason == "Halt") == 3
    assert t.ended is not None
    assert t.ended > t.started


def test_a_promotion_shows_webhooks_who_started_it_and_no_decisive_point() -> None:
    t = timeline_of(recorded("succeeded"))
    assert t.outcome == Outcome.PROMOTED
    assert t.message == "Promotion completed! Scaling down podinfo.test"
    assert t.decisive is None
    assert [w.canary for w in t.weights] == [10, 20, 30, 40, 50, 25, 0]  # stepWeightPromotion
    assert t.max_weight == 50
    assert all(c.passed for c in t.checks)
    assert t.steps == 5
    assert t.actions == (Action(t.started, "start", "ci", "pipeline 1", via="start"),)
    rollout_hooks = [w for w in t.webhooks if w.type == "rollout"]
    assert [w.name for w in rollout_hooks] == ["load"] * 5
    assert all(w.ok for w in rollout_hooks)
    assert [w.type for w in t.webhooks if w.name == "notify"] == ["post-rollout"]
    assert t.events[-1].reason == "Promoted"


def test_operator_actions_pauses_and_a_new_revision() -> None:
    t = timeline_of(recorded("operated"))
    assert t.outcome == Outcome.PROMOTED
    assert [(a.action, a.identity, a.via) for a in t.actions] == [
        ("pause", "unknown", "update"),
        ("resume", "ops", "update"),
        ("new-revision", "unknown", "update"),
        ("promote", "unknown", "signal"),
    ]
    assert t.actions[2].reason == "revision rev-3"
    (pause,) = t.pauses
    assert pause.start == t.actions[0].time
    assert pause.end == t.actions[1].time
    assert t.revision == "rev-3"  # the revision analysed after the restart
    # The restart takes traffic back to the primary before the analysis starts over.
    assert [w.canary for w in t.weights] == [10, 20, 0, 10, 20, 30, 50, 0]


@pytest.mark.parametrize(
    ("name", "strategy", "iterations", "weights"),
    [
        ("ab_testing_rolled_back", "ab-testing", [(1, 5)], [(100, False), (0, False)]),
        (
            "blue_green_mirrored",
            "blue-green-mirroring",
            [(1, 2), (2, 2)],
            [(0, True), (100, False), (0, False)],
        ),
        (
            "canary_mirrored",
            "canary-mirroring",
            [],
            [(0, True), (10, False), (20, False), (0, False)],
        ),
    ],
)
def test_strategies_iterations_and_mirroring(
    name: str, strategy: str, iterations: list[tuple[int, int]], weights: list[tuple[int, bool]]
) -> None:
    t = timeline_of(recorded(name))
    assert t.strategy == strategy
    assert [(i.number, i.wanted) for i in t.iterations] == iterations
    assert [(w.canary, w.mirrored) for w in t.weights] == weights
    assert t.iterative == (strategy != "canary-mirroring")


def test_a_first_initialization_has_nothing_to_roll_out() -> None:
    t = timeline_of(recorded("first_initialization"))
    assert t.outcome == Outcome.NOTHING_TO_ROLL_OUT
    assert t.checks == ()
    assert t.weights == ()
    assert [e.reason for e in t.events] == ["Synced"]


def test_a_local_advance_reads_as_the_activity_did() -> None:
    """Run as a local activity, ``advance`` leaves only its result in history: the weights and
    the step's event are read from it, exactly as from the activity's input before."""
    before, local = (
        timeline_of(recorded("three_action_step")),
        timeline_of(recorded("local_advance")),
    )
    assert [w.canary for w in local.weights] == [w.canary for w in before.weights]
    assert [w.canary for w in local.weights] == [10, 20, 30, 40, 50, 0]
    # (the later history also has the events of the ``flagger-events`` patch: compare the steps')
    advances = [e.message for e in local.events if e.message.startswith("Advance ")]
    assert advances == [e.message for e in before.events if e.message.startswith("Advance ")]
    assert advances[0] == "Advance podinfo.test canary weight 10"
    assert [(c.step, c.name) for c in local.checks] == [(c.step, c.name) for c in before.checks]
    rolled_back = timeline_of(recorded("local_advance_rolled_back"))
    assert [w.canary for w in rolled_back.weights] == [10, 20, 30, 0]  # the 0 is the rollback's


@pytest.mark.parametrize("name", sorted(p.stem for p in HISTORIES.glob("*.json")))
def test_every_recorded_history_reads(name: str) -> None:
    t = timeline_of(recorded(name))
    assert t.workflow_id == WID
    assert t.run_ids
    assert t.canary is not None
    assert [m.name for m in t.metrics] == ["request-success-rate", "request-duration"]
    times = [e.time for e in t.events]
    assert times == sorted(times)
    assert t.outcome != Outcome.RUNNING


# --- the analyse_step shape, event by event ----------------------------------------------------


def _payload(value: Any) -> dict[str, Any]:
    return {
        "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
        "data": base64.b64encode(json.dumps(value).encode()).decode(),
    }


class _History:
    """Events as the server records them (JSON form), for shapes no recording holds yet."""

    def __init__(self, canary: dict[str, Any]) -> None:
        self.events: list[dict[str, Any]] = []
        self.time = datetime(2030, 1, 1, tzinfo=UTC)
        self.add(
            "WORKFLOW_EXECUTION_STARTED",
            workflowExecutionStartedEventAttributes={
                "workflowType": {"name": "CanaryRollout"},
                "input": {"payloads": [_payload({"canary": canary, "revision": "rev-9"})]},
                "originalExecutionRunId": "run-1",
            },
        )

    def add(self, kind: str, **attributes: Any) -> int:
        self.time += timedelta(seconds=10)
        event_id = len(self.events) + 1
        self.events.append(
            {
                "eventId": str(event_id),
                "eventTime": self.time.isoformat().replace("+00:00", "Z"),
                "eventType": f"EVENT_TYPE_{kind}",
                **attributes,
            }
        )
        return event_id

    def activity(self, name: str, arg: Any, result: Any = None, *, fails: str = "") -> None:
        scheduled = self.add(
            "ACTIVITY_TASK_SCHEDULED",
            activityTaskScheduledEventAttributes={
                "activityType": {"name": name},
                "input": {"payloads": [_payload(arg)]},
                "workflowTaskCompletedEventId": str(len(self.events)),
            },
        )
        if fails:
            self.add(
                "ACTIVITY_TASK_FAILED",
                activityTaskFailedEventAttributes={
                    "scheduledEventId": str(scheduled),
                    "failure": {"message": fails},
                },
            )
            return
        self.add(
            "ACTIVITY_TASK_COMPLETED",
            activityTaskCompletedEventAttributes={
                "scheduledEventId": str(scheduled),
                "result": {"payloads": [_payload(result)]},
            },
        )

    def history(self) -> WorkflowHistory:
        return WorkflowHistory.from_json(WID, {"events": self.events})


def _canary() -> dict[str, Any]:
    first = json.loads((HISTORIES / "rolled_back.json").read_text())["events"][0]
    data = first["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["data"]
    canary: dict[str, Any] = json.loads(base64.b64decode(data))["canary"]
    return canary


REF = {"namespace": "test", "name": "podinfo", "target": "podinfo", "service": "podinfo"}
SUCCESS_RATE = {"name": "request-success-rate", "thresholdRange": {"min": 99}}
DURATION = {"name": "request-duration", "thresholdRange": {"max": 500}}
JUDGED = {
    "verdict": "High",
    "pValue": 0.0004,
    "shift": 252.5,
    "ciLow": 230.0,
    "ciHigh": 270.0,
    "canaryN": 40,
    "primaryN": 40,
    "canaryMedian": 295.0,
    "primaryMedian": 42.0,
    "allowedEffect": 0.2,
    "direction": "increase",
    "reason": "canary p99 higher than the primary's",
}


def test_analyse_step_results_read_as_the_per_check_activities() -> None:
    h = _History(_canary())
    step = {"ref": REF, "metrics": [SUCCESS_RATE, DURATION], "phase": "Progressing"}
    h.activity("set_weights", {"ref": REF, "primary": 90, "canary": 10}, {"primary": 90})
    h.activity(
        "analyse_step",
        {**step, "webhooks": [{"name": "load", "type": "rollout", "url": "http://l/"}]},
        {
            "webhooks": [
                {"name": "load", "result": {"ok": True, "statusCode": 200}, "attempts": 1}
            ],
            "metrics": [
                {"name": "request-success-rate", "value": 99.9, "outcome": "ok", "message": "ok"},
                {
                    "name": "request-duration",
                    "value": 310.0,
                    "max": 500,
                    "outcome": "breach",
                    "message": "canary slower than primary",
                    "judgement": JUDGED,
                },
            ],
        },
    )
    h.activity(
        "advance",
        {
            "weights": {"ref": REF, "primary": 80, "canary": 20},
            "event": {
                "reason": "Advance",
                "type": "Normal",
                "message": "Advance podinfo.test canary weight 20",
            },
        },
        {"weights": {"primary": 80, "canary": 20}},
    )
    # A bare WebhookResult list (the shape first planned) reads too; a failed step is an error.
    h.activity(
        "analyse_step", step, {"webhooks": [{"ok": False, "message": "down"}], "metrics": []}
    )
    h.activity("analyse_step", step, fails="worker lost")
    t = timeline_of(h.history())
    assert t.outcome == Outcome.RUNNING
    assert t.ended is None
    assert [w.canary for w in t.weights] == [10, 20]
    assert [(c.step, c.name, c.value, c.weight, c.outcome) for c in t.checks] == [
        (1, "request-success-rate", 99.9, 10, "ok"),
        (1, "request-duration", 310.0, 10, "breach"),
        (3, "request-success-rate", None, 20, "provider error"),
        (3, "request-duration", None, 20, "provider error"),
    ]
    judged = t.checks[1].judgement
    assert judged is not None
    assert (judged.verdict, judged.p_value, judged.shift, judged.ci_low, judged.ci_high) == (
        "High",
        0.0004,
        252.5,
        230.0,
        270.0,
    )
    assert (judged.canary_n, judged.primary_median, judged.passed) == (40, 42.0, False)
    assert t.checks[0].judgement is None
    assert t.checks[0].min == 99.0  # from the Canary's spec when the result carries none
    assert [(w.name, w.ok, w.status_code, w.step) for w in t.webhooks] == [
        ("load", True, 200, 1),
        ("webhook", False, None, 2),
    ]
    assert [(e.reason, e.message) for e in t.events] == [
        ("Advance", "Advance podinfo.test canary weight 20")
    ]
    assert t.revision == "rev-9"


# --- pure pieces ------------------------------------------------------------------------------

AT = datetime(2030, 1, 1, tzinfo=UTC)


def _check(ok: bool, minute: int) -> CheckPoint:
    outcome = "ok" if ok else "breach"
    return CheckPoint(
        1, AT + timedelta(minutes=minute), 10, "m", 1.0, 2.0, None, outcome, "m 1 < 2"
    )


def test_the_decisive_point_follows_the_rollback_reason() -> None:
    checks = [_check(True, 1), _check(False, 2)]
    abort = Action(AT, "abort", "ana", "p99 looks wrong")
    hook = WebhookCall(AT + timedelta(minutes=3), "gate", "rollback", True, status_code=200)
    decided = decisive_of(
        Outcome.ROLLED_BACK,
        "Rolling back podinfo.test aborted by ana: p99 looks wrong",
        checks,
        [],
        [abort],
    )
    assert decided is not None
    assert (decided.kind, decided.message) == ("operator", "aborted by ana: p99 looks wrong")
    decided = decisive_of(
        Outcome.ROLLED_BACK, "Rolling back podinfo.test manual webhook invoked", checks, [hook], []
    )
    assert decided is not None
    assert (decided.kind, decided.name) == ("webhook", "gate")
    decided = decisive_of(
        Outcome.ROLLED_BACK,
        "Rolling back podinfo.test progress deadline exceeded canary deployment podinfo.test "
        "not ready: 0 of 1 updated replicas are available",
        [],
        [],
        [],
    )
    assert decided is not None
    assert decided.kind == "deadline"
    assert decided.message.endswith("0 of 1 updated replicas are available")
    failing_hook = WebhookCall(AT + timedelta(minutes=5), "load", "rollout", False, "timeout")
    decided = decisive_of(Outcome.ROLLED_BACK, "… threshold reached 2", checks, [failing_hook], [])
    assert decided is not None
    assert (decided.kind, decided.name) == ("webhook", "load")  # later than the breach
    assert decisive_of(Outcome.PROMOTED, "Promotion completed!", checks, [], []) is None


@pytest.mark.parametrize(
    ("message", "reason", "kind"),
    [
        ("Halt podinfo.test advancement success rate 69.17% < 99%", "Halt", "Warning"),
        ("Halt podinfo.test advancement waiting for approval gate", "Waiting", "Warning"),
        ("Rolling back podinfo.test failed checks threshold reached 3", "Rollback", "Warning"),
        ("Advance podinfo.test canary weight 10", "Advance", "Normal"),
        ("Something new", "Event", "Normal"),
    ],
)
def test_event_kinds_follow_flaggers_wording(message: str, reason: str, kind: str) -> None:
    assert event_kind(message) == (reason, kind)


def test_the_live_status_completes_events_cut_in_history() -> None:
    t = timeline_of(recorded("rolled_back"))
    full = "Rolling back podinfo.test failed checks threshold reached 3 " + "x" * 200
    cut = next(e for e in t.events if e.reason == "Rollback")
    shortened = type(t)(
        **{**t.__dict__, "events": (Event(cut.time, "Normal", "Event", full[:113]),)}
    )
    merged = merge_events(shortened, [Event(AT, "Warning", "Rollback", full)])
    assert merged.events == (Event(cut.time, "Warning", "Rollback", full),)
    assert merge_events(t, None) is t
