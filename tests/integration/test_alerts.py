"""Alerts through Flagger's ``AlertProvider``s, read from a real API server, to local receivers.

Each provider type posts its payload to a receiver whose URL lives in a Secret (key
``address``), as Flagger users keep chat webhook URLs. Severity filtering, a receiver that is
down, and a provider that is misconfigured must never make ``record_event`` fail, and the URL
must appear neither in the activity's input nor in the logs.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from activities.analysis import AnalysisActivities, AnalysisSettings
from tests.integration.analysis_support import (
    Receiver,
    SandboxApi,
    closed_port_url,
    create_flagger_object,
    create_namespace,
    create_secret,
    install_flagger_crds,
    receiver,
    sandbox_api,
)
from workflows.activity_api import (
    ActivityName,
    CanaryRef,
    EventInput,
    MetricCheckInput,
    WebhookInput,
    WebhookResult,
)
from workflows.model import MetricResult, Phase
from workflows.spec import AlertSpec, MetricSpec, WebhookSpec

MESSAGE = "Rolling back podinfo.test failed checks threshold reached 10"
SECRET_PATH = "/services/T0/B0/xoxb-s3cr3t"


@pytest.fixture(scope="module")
def api() -> Iterator[SandboxApi]:
    with sandbox_api() as running:
        client = running.api_client()
        install_flagger_crds(client)
        create_namespace(client, "test")
        create_namespace(client, "flagger-system")
        yield running


@pytest.fixture
def chat() -> Iterator[Receiver]:
    with receiver() as peer:
        yield peer


def _provider(api: SandboxApi, name: str, type_: str, url: str, **spec: Any) -> None:
    """An AlertProvider whose address is in a Secret (namespace flagger-system)."""
    client = api.api_client()
    create_secret(client, "flagger-system", f"{name}-url", {"address": url})
    create_flagger_object(
        client,
        "alertproviders",
        "flagger-system",
        name,
        {"type": type_, "secretRef": {"name": f"{name}-url"}, **spec},
    )


def _alert(name: str, provider: str, severity: str = "info") -> AlertSpec:
    return AlertSpec.model_validate(
        {
            "name": name,
            "severity": severity,
            "providerRef": {"name": provider, "namespace": "flagger-system"},
        }
    )


def _record(api: SandboxApi, alerts: list[AlertSpec], severity: str = "error") -> EventInput:
    ref = CanaryRef(namespace="test", name="podinfo", target="podinfo", service="podinfo")
    event = EventInput(
        ref=ref,
        type="Warning",
        reason="Synced",
        message=MESSAGE,
        phase=Phase.FAILED,
        weight=15,
        alerts=alerts,
        alert_severity=severity,
    )
    AnalysisActivities(api_client=api.api_client(), settings=AnalysisSettings()).record_event(event)
    return event


def test_slack(api: SandboxApi, chat: Receiver) -> None:
    _provider(api, "slack", "slack", chat.url + SECRET_PATH, channel="deploys", username="bot")
    _record(api, [_alert("on-call", "slack")])
    (seen,) = chat.requests
    assert seen.path == SECRET_PATH
    body = seen.json()
    assert (body["channel"], body["username"]) == ("deploys", "bot")
    attachment = body["attachments"][0]
    assert attachment["color"] == "danger"
    assert attachment["author_name"] == "podinfo.test"
    assert attachment["text"] == MESSAGE
    titles = [f["title"] for f in attachment["fields"]]
    assert titles == ["Target", "Phase", "Canary weight"]


def test_discord_posts_to_the_slack_endpoint(api: SandboxApi, chat: Receiver) -> None:
    _provider(api, "discord", "discord", chat.url + "/api/webhooks/1/tok")
    _record(api, [_alert("d", "discord")])
    (seen,) = chat.requests
    assert seen.path == "/api/webhooks/1/tok/slack"
    body = seen.json()
    assert body["channel"] == "general"
    assert body["username"] == "coalmine"
    assert body["attachments"][0]["text"] == MESSAGE


def test_rocket(api: SandboxApi, chat: Receiver) -> None:
    _provider(api, "rocket", "rocket", chat.url + "/hooks/abc", channel="ops")
    _record(api, [_alert("r", "rocket")])
    body = chat.requests[0].json()
    assert body["channel"] == "ops"
    assert body["attachments"][0]["color"] == "#FF0000"


def test_msteams(api: SandboxApi, chat: Receiver) -> None:
    _provider(api, "teams", "msteams", chat.url + "/webhookb2/x")
    _record(api, [_alert("t", "teams")])
    body = chat.requests[0].json()
    assert body["@type"] == "MessageCard"
    assert body["themeColor"] == "FF0000"
    assert body["sections"][0]["activityTitle"] == MESSAGE
    assert {"name": "Canary weight", "value": "15"} in body["sections"][0]["facts"]


def test_gchat(api: SandboxApi, chat: Receiver) -> None:
    _provider(api, "gchat", "gchat", chat.url + "/v1/spaces/x/messages?key=k")
    _record(api, [_alert("g", "gchat")])
    card = chat.requests[0].json()["cards"][0]
    assert card["header"]["subtitle"] == "podinfo.test"
    assert MESSAGE in card["sections"][0]["widgets"][0]["textParagraph"]["text"]


def test_generic_webhook_with_a_plain_address(api: SandboxApi, chat: Receiver) -> None:
    create_flagger_object(
        api.api_client(),
        "alertproviders",
        "flagger-system",
        "generic",
        {"type": "generic", "address": chat.url + "/alerts"},
    )
    _record(api, [_alert("gen", "generic")])
    body = chat.requests[0].json()
    assert body["message"] == MESSAGE
    assert body["severity"] == "error"
    assert body["fields"]["Phase"] == "Failed"


def test_severity_filtering(api: SandboxApi) -> None:
    with receiver() as info, receiver() as warn, receiver() as error:
        _provider(api, "sev-info", "generic", info.url)
        _provider(api, "sev-warn", "generic", warn.url)
        _provider(api, "sev-error", "generic", error.url)
        alerts = [
            _alert("i", "sev-info", "info"),
            _alert("w", "sev-warn", "warn"),
            _alert("e", "sev-error", "error"),
        ]
        _record(api, alerts, severity="warn")
        assert (len(info.requests), len(warn.requests), len(error.requests)) == (1, 1, 0)
        _record(api, alerts, severity="info")
        assert (len(info.requests), len(warn.requests), len(error.requests)) == (2, 1, 0)
        _record(api, alerts, severity="error")
        assert (len(info.requests), len(warn.requests), len(error.requests)) == (3, 2, 1)


def test_failing_notifiers_never_fail_the_event(
    api: SandboxApi, chat: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    down_url = closed_port_url() + SECRET_PATH
    _provider(api, "down", "slack", down_url)
    _provider(api, "refusing", "slack", chat.url + "/refuse" + SECRET_PATH)
    _provider(api, "pager", "pagerduty", chat.url + SECRET_PATH)
    _provider(api, "malformed", "slack", "http://\x01bad" + SECRET_PATH)
    _provider(api, "working", "slack", chat.url + "/ok" + SECRET_PATH)
    chat.reply = lambda r: (404, b"no") if r.path.startswith("/refuse") else (200, b"ok")
    alerts = [
        _alert("a", "down"),
        _alert("b", "refusing"),
        _alert("c", "pager"),
        _alert("d", "missing-provider"),
        _alert("m", "malformed"),
        _alert("e", "working"),
    ]
    event = _record(api, alerts)  # must not raise
    assert [r.path for r in chat.requests] == ["/refuse" + SECRET_PATH, "/ok" + SECRET_PATH]
    assert "slack notification failed: ConnectError" in caplog.text
    assert "HTTP 404" in caplog.text
    assert "'pagerduty' is not supported" in caplog.text
    assert "missing-provider not found" in caplog.text
    assert "slack notification failed: InvalidURL" in caplog.text
    # The URL (a credential) is in no log line and not in the activity's input.
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in event.model_dump_json()


# --- through a real Temporal worker: no secret in the stored history ----------------------------


@workflow.defn(name="AnalysisSecretsProbe", sandboxed=False)
class SecretsProbe:
    """Calls the three analysis activities by their registered names, as the rollout does."""

    @workflow.run
    async def run(
        self, metric: MetricCheckInput, hook: WebhookInput, event: EventInput
    ) -> list[str]:
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=30),
            "retry_policy": RetryPolicy(maximum_attempts=1),
        }
        result = await workflow.execute_activity(
            ActivityName.CHECK_METRIC, metric, result_type=MetricResult, **options
        )
        called = await workflow.execute_activity(
            ActivityName.CALL_WEBHOOK, hook, result_type=WebhookResult, **options
        )
        await workflow.execute_activity(ActivityName.RECORD_EVENT, event, **options)
        return [result.message, called.message]


def _payload_texts(node: Any) -> Iterator[str]:
    """Every string in a history, with payload ``data`` base64-decoded."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                yield base64.b64decode(value).decode(errors="replace")
            else:
                yield from _payload_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _payload_texts(item)
    elif isinstance(node, str):
        yield node


async def test_no_secret_in_workflow_history(api: SandboxApi, time_skipping_env: Any) -> None:
    secrets = {"prom-tok-91", "hook-tok-42", "xoxb-chat-77"}
    client = api.api_client()
    prometheus_answer = (
        b'{"status":"success","data":{"resultType":"vector","result":'
        b'[{"metric":{},"value":[1,"99.9"]}]}}'
    )
    with receiver(lambda _r: (200, prometheus_answer)) as prom, receiver() as peer:
        create_secret(client, "test", "prom-creds", {"token": "prom-tok-91"})
        create_secret(client, "test", "hook-creds", {"token": "hook-tok-42"})
        create_flagger_object(
            client,
            "metrictemplates",
            "test",
            "probe",
            {
                "provider": {
                    "type": "prometheus",
                    "address": prom.url,
                    "secretRef": {"name": "prom-creds"},
                },
                "query": "up",
            },
        )
        _provider(api, "probe-chat", "slack", peer.url + "/services/xoxb-chat-77")
        ref = CanaryRef(namespace="test", name="podinfo", target="podinfo", service="podinfo")
        metric = MetricCheckInput(
            ref=ref,
            metric=MetricSpec.model_validate(
                {"name": "probe", "templateRef": {"name": "probe"}, "thresholdRange": {"min": 99}}
            ),
        )
        hook = WebhookInput(
            ref=ref,
            webhook=WebhookSpec.model_validate(
                {"name": "gate", "url": peer.url + "/gate", "secretRef": {"name": "hook-creds"}}
            ),
            phase=Phase.PROGRESSING,
        )
        event = EventInput(
            ref=ref,
            reason="Synced",
            message="Promotion completed! Scaling down podinfo.test",
            phase=Phase.SUCCEEDED,
            alerts=[_alert("chat", "probe-chat")],
            alert_severity="info",
        )
        activities = AnalysisActivities(api_client=api.api_client(), settings=AnalysisSettings())
        async with Worker(
            time_skipping_env.client,
            task_queue="analysis-secrets",
            workflows=[SecretsProbe],
            activities=activities.all(),
            activity_executor=ThreadPoolExecutor(4),
        ):
            handle = await time_skipping_env.client.start_workflow(
                SecretsProbe.run,
                args=[metric, hook, event],
                id=f"analysis-secrets-{uuid.uuid4().hex[:8]}",
                task_queue="analysis-secrets",
            )
            messages = await handle.result()
            history = await handle.fetch_history()
    # The secrets did their job: each reached its receiver...
    assert messages == ["probe 99.90", "HTTP 200"]
    assert prom.requests[0].headers["authorization"] == "Bearer prom-tok-91"
    assert peer.on("/gate")[0].headers["authorization"] == "Bearer hook-tok-42"
    assert peer.on("/services/xoxb-chat-77")
    # ...and none of them is anywhere in the stored history.
    texts = "\n".join(_payload_texts(history.to_json_dict()))
    assert "Promotion completed!" in texts  # payloads were decoded: the scan can see
    for secret in secrets:
        assert secret not in texts
