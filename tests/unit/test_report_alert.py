"""A rollback's alert says why and how to draw the rollout, and quotes nothing secret.

The alert goes through the real `AlertSender` and Slack notifier to an `httpx.MockTransport`
that keeps what was posted.
"""

from __future__ import annotations

import json

import httpx

from activities.analysis.alerts import AlertSender, AlertTarget, report_command, with_report
from activities.analysis.notifiers import Field

HOOK = "https://hooks.slack.invalid/services/T000/B000/SECRET-PART"
REASON = "Rolling back podinfo.test failed checks threshold reached 3"


def _post(severity: str, message: str = REASON) -> tuple[str, dict[str, object]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    sender = AlertSender(timeout_seconds=2, transport=httpx.MockTransport(answer))
    sender.send(
        AlertTarget(type="slack", url=HOOK),
        workload="podinfo",
        namespace="test",
        message=message,
        fields=[Field("Target", "Deployment/podinfo.test"), Field("Canary weight", "30")],
        severity=severity,
    )
    (request,) = seen
    body = request.content.decode()
    return body, json.loads(body)


def test_a_rollback_alert_carries_the_reason_and_the_report_command() -> None:
    body, _ = _post("error")
    assert REASON in body
    assert "coalmine rollout report podinfo -n test -o report.html" in body
    assert "SECRET-PART" not in body  # the hook URL authorizes posting: never in the message
    assert "Canary weight" in body


def test_other_alerts_are_as_before() -> None:
    body, _ = _post("info", "New revision detected podinfo.test")
    assert "coalmine rollout report" not in body


def test_the_command_names_the_cluster_only_when_it_is_not_the_default() -> None:
    assert report_command("podinfo", "test") == "coalmine rollout report podinfo -n test"
    assert report_command("podinfo", "test", "eu-1") == (
        "coalmine rollout report podinfo -n test --cluster eu-1"
    )
    fields = [Field("Report", "given")]
    assert with_report(fields, workload="p", namespace="n", severity="error") == fields
